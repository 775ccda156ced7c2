"""Target distributions of the position head (spec §5.1, §5.2); no gradients.

Direction: q_dir(s) = softmax_s( Σ_{l≤L} Σ_m Y_lm(u) Y_lm(s) / tau_label ) on the
grid, u the unit displacement neighbour → masked atom (= Σ_l (2l+1)/(4π) P_l(u·s)).

Radius, on bin centres c_b = linspace(low, high, bins):
* ``"paper"``: sum-normalised Gaussian N(d, σ) (computed as a softmax of
  −(c−d)²/(2σ²), identical and safe when d lies far outside the bins);
* ``"reference"``: the released code's softmax(exp(−0.3((c−d)/σ)²)), nearly uniform
  (kept for ablation; spec §9.2).
"""

from __future__ import annotations

from typing import Sequence

import torch

from empp_ff.auxiliary.harmonics import real_sh


@torch.no_grad()
def direction_target(displacement: torch.Tensor, grid_matrix: torch.Tensor, tau_label: float) -> torch.Tensor:
    """``q [P, S]`` from displacements ``[P, 3]`` and the grid matrix ``[(L+1)², S]``."""
    k = grid_matrix.shape[0]
    lmax = int(round(k**0.5)) - 1
    dtype = torch.promote_types(grid_matrix.dtype, torch.float32)
    sh = real_sh(lmax, displacement.to(dtype), normalize=True)  # [P, K]
    logits = (sh @ grid_matrix.to(dtype)) / tau_label
    return torch.softmax(logits, dim=-1)


def radius_bin_centres(radius_range: Sequence[float], bins: int, dtype=torch.float64, device=None) -> torch.Tensor:
    return torch.linspace(float(radius_range[0]), float(radius_range[1]), int(bins), dtype=dtype, device=device)


@torch.no_grad()
def radius_target(distance: torch.Tensor, centres: torch.Tensor, sigma: float, mode: str = "paper") -> torch.Tensor:
    """``q [P, R]`` from distances ``[P]`` (Å) and bin centres ``[R]``."""
    dtype = torch.promote_types(centres.dtype, torch.float32)
    z = (centres.to(dtype)[None, :] - distance.to(dtype)[:, None]) / sigma
    if mode == "paper":
        return torch.softmax(-0.5 * z * z, dim=-1)
    if mode == "reference":
        return torch.softmax(torch.exp(-0.3 * z * z), dim=-1)
    raise ValueError(f"radius label mode must be 'paper' or 'reference', got {mode!r}")
