"""Sums over groups (atoms -> graphs, pairs -> copies) with ``index_add``.

``index_add`` is deterministic on CPU, so resumed runs reproduce uninterrupted
ones bit for bit. TorchScript-able (the exported potential uses it).
"""

from __future__ import annotations

import torch


def scatter_sum(values: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    """``out[k]`` = the sum of ``values[i]`` over ``index[i] == k``, for k < ``size``."""
    return torch.zeros(size, dtype=values.dtype, device=values.device).index_add(0, index, values)
