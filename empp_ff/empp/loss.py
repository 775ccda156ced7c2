"""KL losses and their reductions (spec §5.4).

Per pair: KL(q‖p) = Σ q (log q − log p), via ``kl_div(log_p, q).sum(-1)``, in
float32 or wider. Per masked copy j: ``"global_mean"`` (code) averages over all
pairs of the copy; ``"per_atom_mean"`` (paper eq. 16/18) averages over the pairs
of each masked atom, then over the masked atoms of the copy. Across the n copies:
``"mean"`` (paper eq. 8) or ``"sum"`` (code). Copies without any pair (every
molecule skipped, or no neighbour within the cutoff) are left out of the mean.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F

from empp_ff.model.scatter import scatter_sum


def kl_per_pair(log_p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``[P]`` KL(q‖p) for log-probabilities ``log_p [P, K]`` and targets ``q [P, K]``."""
    dtype = torch.promote_types(torch.promote_types(log_p.dtype, q.dtype), torch.float32)
    return F.kl_div(log_p.to(dtype), q.to(dtype), reduction="none").sum(-1)


def per_copy_loss(
    pair_loss: torch.Tensor, g_idx: torch.Tensor, num_sources: int, num_copies: int, pair_reduction: str
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Return (loss per copy ``[n]``, bool ``[n]`` copy has pairs).

    ``g_idx`` is the copy-graph id j*B + b of each pair (B = ``num_sources``)."""
    num_graphs = num_sources * num_copies
    ones = torch.ones_like(pair_loss)
    copy_of_pair = torch.div(g_idx, num_sources, rounding_mode="floor")
    if pair_reduction == "global_mean":
        total = scatter_sum(pair_loss, copy_of_pair, num_copies)
        count = scatter_sum(ones, copy_of_pair, num_copies)
    elif pair_reduction == "per_atom_mean":
        atom_total = scatter_sum(pair_loss, g_idx, num_graphs)
        atom_count = scatter_sum(ones, g_idx, num_graphs)
        has = atom_count > 0
        atom_mean = atom_total / atom_count.clamp(min=1)
        graph_copy = torch.arange(num_graphs, device=g_idx.device) // num_sources
        total = scatter_sum(atom_mean, graph_copy, num_copies)
        count = scatter_sum(has.to(pair_loss.dtype), graph_copy, num_copies)
    else:
        raise ValueError(f"pair_reduction must be 'global_mean' or 'per_atom_mean', got {pair_reduction!r}")
    return total / count.clamp(min=1), count > 0


def reduce_copies(copy_loss: torch.Tensor, has_pairs: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "sum":
        return copy_loss.sum()
    if mode == "mean":
        return copy_loss.sum() / has_pairs.sum().clamp(min=1).to(copy_loss.dtype)
    raise ValueError(f"mask_loss_reduction must be 'sum' or 'mean', got {mode!r}")
