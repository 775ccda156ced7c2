"""EMPPModule: the masked-position-prediction loss for one batch (spec §1b S2–S3).

Training-only. It owns the conditioning encoders and the position head, not the
backbone (the trainer owns that and passes it in), so nothing here touches the
clean pass or an exported model.

One call: sample (or take) n masks per molecule → one batched graph of the n
masked copies → backbone under ``backbone.conditioning`` (no forces, positions
without grad) → head on the former neighbours' features → direction and radius
log-distributions → KL to the targets → reduction over pairs and masks.

Label statistics (``label_stats``, stored as buffers):
``energy_per_atom_mean``, ``energy_per_atom_std`` of e = (E − Σ E0[z]) / N over the
training set (E0 = the backbone spec's atomic energies) — needed when
``use_energy_label``; ``force_scale`` (RMS force component, eV/Å) — needed when
``use_force_label``. y = clamp((e − mean)/std, ±3) is the encoded energy.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch

from empp_ff._elements import z_table
from empp_ff.empp.conditioning import LabelConditioning
from empp_ff.empp.config import EMPPConfig
from empp_ff.empp.direction import DirectionHead
from empp_ff.empp.head import PositionHead
from empp_ff.empp.loss import kl_per_pair, per_copy_loss, reduce_copies
from empp_ff.empp.masking import MaskedBatch, build_masked_batch, sample_mask_indices
from empp_ff.empp.radius import RadiusHead
from empp_ff.empp.targets import direction_target, radius_bin_centres, radius_target
from empp_ff.model._imports import quiet_torchscript_build
from empp_ff.model.interface import default_dtype
from empp_ff.model.scatter import scatter_sum


def _feature_lmax(irreps) -> int:
    return max(ir.l for _, ir in irreps)


class EMPPModule(torch.nn.Module):
    def __init__(self, config: EMPPConfig, backbone, label_stats: Optional[Dict[str, float]] = None):
        super().__init__()
        feature_irreps = backbone.feature_irreps()
        feature_lmax = _feature_lmax(feature_irreps)
        config.validate(feature_lmax=feature_lmax)
        lmax = feature_lmax if config.head_lmax is None else int(config.head_lmax)
        if lmax < 1:
            raise ValueError(
                "empp: the position head needs equivariant (l >= 1) backbone features; "
                f"got head lmax {lmax} from features {feature_irreps}. Use a backbone with max_L >= 1"
            )
        self.config = config
        self.lmax = lmax
        spec = backbone.spec
        dtype = next(backbone.parameters()).dtype
        stats = dict(label_stats or {})
        needed = []
        if config.use_energy_label:
            needed += ["energy_per_atom_mean", "energy_per_atom_std"]
        if config.use_force_label:
            needed += ["force_scale"]
        missing = [k for k in needed if k not in stats]
        if missing:
            raise ValueError(
                f"empp: label_stats lacks {missing} (needed by use_energy_label/use_force_label); "
                "pass the training-set statistics or switch those labels off"
            )
        if config.use_energy_label and not stats["energy_per_atom_std"] > 0:
            raise ValueError(f"empp: energy_per_atom_std must be > 0, got {stats['energy_per_atom_std']}")
        if config.use_force_label and not stats["force_scale"] > 0:
            raise ValueError(f"empp: force_scale must be > 0, got {stats['force_scale']}")
        for buffer, key, default in (("energy_mean", "energy_per_atom_mean", 0.0),
                                     ("energy_std", "energy_per_atom_std", 1.0),
                                     ("force_scale", "force_scale", 1.0)):
            self.register_buffer(buffer, torch.tensor(float(stats.get(key, default)), dtype=torch.float64))
        e0 = z_table(spec.atomic_numbers, list(spec.atomic_energies), 0.0, torch.float64)
        self.register_buffer("e0_by_z", e0, persistent=False)

        with default_dtype(dtype), quiet_torchscript_build():
            self.conditioning = LabelConditioning(config, spec.atomic_numbers, backbone.message_irreps())
            self.head = PositionHead(feature_irreps, config.head_channels, lmax)
        self.direction = DirectionHead(lmax, config.grid_res, config.head_channels, config.dir_mlp_hidden, config.tau,
                                       dtype=dtype)
        self.radius = RadiusHead(config.head_channels, config.radius_mlp_hidden, config.radius_bins, config.radius_tau,
                                 dtype=dtype)
        self.register_buffer(
            "radius_centres", radius_bin_centres(config.radius_range, config.radius_bins, dtype=dtype), persistent=False
        )

    # -- labels ----------------------------------------------------------------------
    def standardised_energy(self, batch) -> torch.Tensor:
        """y [B] = ((E − Σ E0[z]) / N − mean) / std (clamped if configured); NaN where E is missing."""
        B = int(batch.num_graphs)
        e0 = self.e0_by_z[batch.atomic_numbers]
        e0_sum = scatter_sum(e0, batch.batch, B)
        n = torch.bincount(batch.batch, minlength=B).to(torch.float64)
        e = (batch.energy.to(torch.float64) - e0_sum) / n.clamp(min=1)
        y = (e - self.energy_mean) / self.energy_std
        if self.config.energy_clamp:
            lo, hi = self.config.energy_gauss_range
            y = y.clamp(min=float(lo), max=float(hi))
        return y

    def _label_masks(self, batch, name: str, values: torch.Tensor) -> torch.Tensor:
        flag = getattr(batch, name, None)
        finite = torch.isfinite(values)
        if finite.dim() > 1:
            finite = finite.all(dim=-1)
        return finite if flag is None else (flag.to(torch.bool) & finite)

    # -- the loss --------------------------------------------------------------------
    def masked_batch(self, batch, generator: Optional[torch.Generator] = None,
                     mask_indices: Optional[torch.Tensor] = None) -> MaskedBatch:
        B = int(batch.num_graphs)
        if mask_indices is None:
            mask_indices = sample_mask_indices(batch.batch, B, self.config.num_masks, generator)
        return build_masked_batch(batch.positions, batch.atomic_numbers, batch.edge_index, batch.shifts,
                                  batch.batch, B, mask_indices)

    def conditioning_vectors(self, batch, mb: MaskedBatch, use_labels: bool):
        src = mb.source_graph
        valid = mb.masked_atom >= 0
        y = e_on = f = f_on = None
        if use_labels and self.config.use_energy_label and getattr(batch, "energy", None) is not None:
            y_b = self.standardised_energy(batch)
            e_on_b = self._label_masks(batch, "has_energy", y_b)
            y, e_on = y_b[src], e_on_b[src] & valid
        if use_labels and self.config.use_force_label and getattr(batch, "forces", None) is not None:
            atom = mb.masked_atom.clamp(min=0)
            f = batch.forces[atom].to(torch.float64) / self.force_scale
            f_on = torch.isfinite(f).all(dim=-1) & valid
            has = getattr(batch, "has_forces", None)
            if has is not None:
                f_on = f_on & has.to(torch.bool)[src]
        return self.conditioning(mb.masked_element, y, e_on, f, f_on)

    def forward(
        self,
        backbone,
        batch,
        generator: Optional[torch.Generator] = None,
        use_labels: bool = True,
        mask_indices: Optional[torch.Tensor] = None,
    ) -> Dict[str, torch.Tensor]:
        """EMPP loss of one batch.

        Returns scalar tensors ``loss`` (reduced over pairs and masks, NOT multiplied
        by ``config.weight``), ``direction_kl`` and ``radius_kl`` (mean per pair, for
        logging) and ``num_pairs``. With no (masked atom, neighbour) pair at all (only
        single-atom molecules) everything is a zero constant without a graph.
        ``mask_indices`` [n, B] (global atom indices,
        −1 = skip) replaces the random masks (tests, reproducibility).
        """
        mb = self.masked_batch(batch, generator, mask_indices)
        if mb.num_pairs == 0:  # e.g. only single-atom molecules: nothing to predict
            zero = torch.zeros((), dtype=torch.float32, device=batch.positions.device)
            return {"loss": zero, "direction_kl": zero, "radius_kl": zero,
                    "num_pairs": torch.zeros((), dtype=torch.long, device=zero.device)}
        per_layer = self.conditioning_vectors(batch, mb, use_labels)
        with backbone.conditioning(per_layer, mb.batch):
            _, feats = backbone(mb.positions, mb.atomic_numbers, mb.edge_index, mb.shifts)
        return self.loss_from_features(feats, mb)

    def loss_from_features(self, feats: torch.Tensor, mb: MaskedBatch) -> Dict[str, torch.Tensor]:
        coefficients = self.head(feats[mb.k_idx])  # [P, C, K]
        log_p_dir = self.direction(coefficients)  # [P, S]
        log_p_rad = self.radius(coefficients[:, :, 0])  # [P, R]
        q_dir = direction_target(mb.displacement, self.direction.grid_matrix, self.config.tau_label)
        distance = torch.linalg.norm(mb.displacement, dim=-1)
        q_rad = radius_target(distance, self.radius_centres, self.config.radius_sigma, self.config.radius_label_mode)
        kl_dir = kl_per_pair(log_p_dir, q_dir)
        kl_rad = kl_per_pair(log_p_rad, q_rad)
        copy_loss, has_pairs = per_copy_loss(
            kl_dir + kl_rad, mb.g_idx, mb.num_source_graphs, mb.num_copies, self.config.pair_reduction
        )
        loss = reduce_copies(copy_loss, has_pairs, self.config.mask_loss_reduction)
        P = kl_dir.shape[0]
        denom = max(P, 1)
        return {
            "loss": loss,
            "direction_kl": kl_dir.detach().sum() / denom,
            "radius_kl": kl_rad.detach().sum() / denom,
            "num_pairs": torch.tensor(P, device=loss.device),
        }
