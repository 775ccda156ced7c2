"""Equivariant trunk of the position head (spec §4.2).

Neighbour features h [P, dim(feature_irreps)] → per-irrep RMS norm → o3.Linear
to the gate input → Gate (SiLU on scalars, sigmoid gates on l > 0) →
o3.Linear to ``C x 0e + C x 1o + C x 2e (+ C x 3o)`` up to ``lmax`` (O(3)
parity (−1)^l, as MACE's features; spec §10) → coefficients A [P, C, (L+1)²]
(channel c's coefficients in e3nn order l = 0; l = 1, m = −1..1; ...).
"""

from __future__ import annotations

import torch

from empp_ff.auxiliary.norm import IrrepsRMSNorm
from empp_ff.model._imports import import_e3nn_o3
from empp_ff.model.irreps import irreps_up_to, parity


class PositionHead(torch.nn.Module):
    def __init__(self, feature_irreps, channels: int, lmax: int):
        super().__init__()
        o3 = import_e3nn_o3()
        from e3nn.nn import Gate

        feature_irreps = o3.Irreps(feature_irreps).simplify()
        present = {(ir.l, ir.p) for _, ir in feature_irreps}
        for l in range(lmax + 1):
            if (l, (-1) ** l) not in present:
                raise ValueError(
                    f"position head: the backbone features {feature_irreps} carry no {l}{parity(l)} "
                    f"irrep, needed for head degree l={l} (lmax={lmax})"
                )
        scalars = o3.Irreps([(mul, ir) for mul, ir in feature_irreps if ir.l == 0])
        gated = o3.Irreps([(mul, ir) for mul, ir in feature_irreps if ir.l > 0])
        gates = o3.Irreps(f"{gated.num_irreps}x0e") if gated.num_irreps > 0 else o3.Irreps("")
        self.gate = Gate(
            scalars, [torch.nn.functional.silu] * len(scalars),
            gates, [torch.sigmoid] * len(gates),
            gated,
        )
        self.norm = IrrepsRMSNorm(feature_irreps)
        self.linear_in = o3.Linear(feature_irreps, self.gate.irreps_in)
        self.irreps_out = o3.Irreps(irreps_up_to(channels, lmax))
        self.linear_out = o3.Linear(self.gate.irreps_out, self.irreps_out)
        self.channels = int(channels)
        self.lmax = int(lmax)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``h [P, dim]`` → coefficients ``A [P, C, (lmax+1)²]``."""
        x = self.linear_out(self.gate(self.linear_in(self.norm(h))))
        return to_coefficients(x, self.channels, self.lmax)


def to_coefficients(x: torch.Tensor, channels: int, lmax: int) -> torch.Tensor:
    """``[P, C·(L+1)²]`` in e3nn layout (C x 0, C x 1, ...) → ``[P, C, (L+1)²]``."""
    blocks = []
    start = 0
    for l in range(lmax + 1):
        d = 2 * l + 1
        blocks.append(x[:, start : start + channels * d].reshape(-1, channels, d))
        start += channels * d
    return torch.cat(blocks, dim=-1)
