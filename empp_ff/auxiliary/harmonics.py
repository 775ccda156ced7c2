"""Real spherical harmonics of vectors, as the auxiliary heads and encoders use them
(EMPP's force conditioning and targets, denoising's force encoding)."""

from __future__ import annotations

import torch

from empp_ff.model._imports import import_e3nn_o3


def real_sh(lmax: int, vectors: torch.Tensor, normalize: bool) -> torch.Tensor:
    """Real SH l = 0..lmax (integral normalisation, e3nn order) of ``vectors [..., 3]``."""
    o3 = import_e3nn_o3()
    return o3.spherical_harmonics(list(range(lmax + 1)), vectors, normalize=normalize, normalization="integral")
