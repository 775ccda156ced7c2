"""The S² grid of the direction distribution (spec §4.3).

e3nn's ``ToS2Grid(lmax, res, normalization="integral")`` is linear in the
coefficients, so it is evaluated once on the identity and kept as a matrix
``Y [(L+1)², S]`` (S = res_beta·res_alpha, beta-major like ToS2Grid's output):
grid evaluation of coefficients A[..., (L+1)²] is then one matmul, A @ Y.
"""

from __future__ import annotations

from typing import Sequence

import torch

from empp_ff.model._imports import import_e3nn_o3


def sphere_grid_matrix(lmax: int, res: Sequence[int], dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``Y [(lmax+1)², res_beta*res_alpha]``: real SH (integral norm.) on the e3nn grid."""
    o3 = import_e3nn_o3()
    to_grid = o3.ToS2Grid(lmax=lmax, res=tuple(int(r) for r in res), normalization="integral", dtype=torch.float64)
    k = (lmax + 1) ** 2
    values = to_grid(torch.eye(k, dtype=torch.float64))  # [K, beta, alpha]
    return values.reshape(k, -1).to(dtype)


def sphere_grid_points(res: Sequence[int], dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Unit vectors ``[S, 3]`` of the grid points, in the same order as the matrix columns."""
    o3 = import_e3nn_o3()
    betas, alphas = o3.s2_grid(int(res[0]), int(res[1]), dtype=torch.float64)
    beta, alpha = torch.meshgrid(betas, alphas, indexing="ij")
    return o3.angles_to_xyz(alpha, beta).reshape(-1, 3).to(dtype)
