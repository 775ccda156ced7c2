"""DenoiseModule: the coordinate-denoising loss of one batch.

Every atom of the batch is displaced by sigma·eps (eps ~ N(0, 1) per component); the
backbone runs on the noisy copy (same edge list, geometry recomputed, no forces) and
an equivariant head maps each atom's last-layer features to a vector that should
equal eps. Loss = mean over atoms and components of (eps_hat - eps)², which is 1 for
a model that predicts zero. With ``force_encoding`` (DeNS) the clean structure's
force on each atom conditions the noisy pass through the backbone's conditioning hook
(per-node vectors on every interaction's message path), so the target is
well-defined for non-equilibrium structures.

For Boltzmann-distributed MD frames, E[eps | noisy structure] ≈ sigma·F/kT as
sigma -> 0 (denoising score matching), so the head learns a force-like field.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch

from empp_ff.auxiliary.harmonics import real_sh
from empp_ff.auxiliary.norm import IrrepsRMSNorm
from empp_ff.denoise.config import DenoiseConfig
from empp_ff.model._imports import import_e3nn_o3
from empp_ff.model.interface import default_dtype
from empp_ff.model.irreps import irreps_up_to

# The backbone's 1o features rotate with the Cartesian rotation matrix itself (MACE's
# spherical harmonics of l=1 are in x, y, z order), and o3.Linear / Gate only mix
# multiplicities, so the head's 1o output is already a Cartesian vector.


class VectorHead(torch.nn.Module):
    """Node features -> one Cartesian vector per node (RMS norm, gated MLP, 1o output)."""

    def __init__(self, feature_irreps, channels: int):
        super().__init__()
        o3 = import_e3nn_o3()
        from e3nn.nn import Gate

        feature_irreps = o3.Irreps(feature_irreps).simplify()
        if not any(ir.l == 1 and ir.p == -1 for _, ir in feature_irreps):
            raise ValueError(f"denoising head: the backbone features {feature_irreps} carry no 1o irrep")
        self.norm = IrrepsRMSNorm(feature_irreps)
        self.gate = Gate(f"{channels}x0e", [torch.nn.functional.silu], f"{channels}x0e", [torch.sigmoid],
                         f"{channels}x1o")
        self.linear_in = o3.Linear(feature_irreps, self.gate.irreps_in)
        self.linear_out = o3.Linear(self.gate.irreps_out, o3.Irreps("1x1o"))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear_out(self.gate(self.linear_in(self.norm(h))))


class ForceEncoding(torch.nn.Module):
    """Per-layer o3.Linear of the SH of each atom's scaled force -> message irreps."""

    def __init__(self, message_irreps, lmax: int):
        super().__init__()
        o3 = import_e3nn_o3()
        self.lmax = int(lmax)
        self.layers = torch.nn.ModuleList(
            o3.Linear(o3.Irreps(irreps_up_to(1, lmax)), o3.Irreps(irreps)) for irreps in message_irreps
        )

    def forward(self, scaled_forces: torch.Tensor):
        sh = real_sh(self.lmax, scaled_forces, normalize=False)
        return [layer(sh) for layer in self.layers]


class DenoiseModule(torch.nn.Module):
    def __init__(self, config: DenoiseConfig, backbone, force_scale: float = 1.0):
        super().__init__()
        config.validate()
        if not force_scale > 0:
            raise ValueError(f"denoise: force_scale must be > 0, got {force_scale}")
        self.config = config
        dtype = next(backbone.parameters()).dtype
        self.register_buffer("force_scale", torch.tensor(float(force_scale), dtype=torch.float64))
        with default_dtype(dtype):
            self.head = VectorHead(backbone.feature_irreps(), config.head_channels)
            self.force_encoding = (ForceEncoding(backbone.message_irreps(), config.force_sh_lmax)
                                   if config.force_encoding else None)

    def noise(self, positions: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
        device = generator.device if generator is not None else positions.device
        eps = torch.randn(positions.shape, generator=generator, dtype=torch.float64, device=device)
        return eps.to(device=positions.device, dtype=positions.dtype)

    def _conditioning(self, batch, use_labels: bool):
        """Per-node force codes (None entries: no conditioning on that layer)."""
        forces = getattr(batch, "forces", None)
        if self.force_encoding is None or not use_labels or forces is None:
            return None
        on = torch.isfinite(forces).all(dim=-1)
        has = getattr(batch, "has_forces", None)
        if has is not None:
            on = on & has.to(torch.bool)[batch.batch]
        scaled = forces.to(torch.float64) / self.force_scale
        scaled = torch.where(on[:, None], scaled, torch.zeros_like(scaled))
        codes = self.force_encoding(scaled.to(batch.positions.dtype))
        return [c * on[:, None].to(c.dtype) for c in codes]

    def forward(self, backbone, batch, generator: Optional[torch.Generator] = None,
                use_labels: bool = True, eps: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """``loss`` (mean squared error of the predicted unit noise; NOT multiplied by the weight).

        ``eps`` [N, 3] replaces the random noise (tests)."""
        positions = batch.positions.detach()
        if eps is None:
            eps = self.noise(positions, generator)
        noisy = positions + self.config.sigma * eps
        per_layer = self._conditioning(batch, use_labels)
        if per_layer is None:
            _, feats = backbone(noisy, batch.atomic_numbers, batch.edge_index, batch.shifts)
        else:
            nodes = torch.arange(positions.shape[0], device=positions.device)
            with backbone.conditioning(per_layer, nodes):
                _, feats = backbone(noisy, batch.atomic_numbers, batch.edge_index, batch.shifts)
        predicted = self.head(feats)
        loss = (predicted - eps).pow(2).mean()
        return {"loss": loss}
