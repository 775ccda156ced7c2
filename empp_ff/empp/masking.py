"""Masked copies of a batch (spec §2, §1b S2–S3).

* ``sample_mask_indices``: one random permutation per molecule (vectorised:
  sort of ``graph + U[0,1)`` keys); the j-th mask of molecule b is the j-th atom
  of its permutation, so the n masked atoms of a molecule are distinct.
* ``build_masked_batch``: the n masked copies of the batch as ONE batched graph
  (copy j of molecule b is graph ``j*B + b``), made by filtering the existing
  edge list (drop the masked node and its edges, renumber through a cumulative
  sum). The neighbour set of a masked atom comes from the ORIGINAL edges
  (senders of edges received by the masked atom), with the edge vector
  pos[masked] − pos[k] + shift as the target displacement, so periodic images
  are handled like the backbone handles them.

Small molecules (decision): copy j of molecule b exists only when the molecule
has an atom to mask and one to keep, i.e. ``N_b >= 2`` and ``j < N_b``.
Otherwise that copy is *skipped*: its mask index is −1 and the molecule
contributes no atoms and no pairs to copy j (isolated-atom reference
configurations, common in MACE training sets, thus never crash a step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class MaskedBatch:
    """The n masked copies of a batch of B molecules, as one graph batch."""

    positions: torch.Tensor  # [M, 3] (detached)
    atomic_numbers: torch.Tensor  # [M]
    edge_index: torch.Tensor  # [2, E'] into the M masked nodes
    shifts: torch.Tensor  # [E', 3]
    batch: torch.Tensor  # [M] masked-copy graph id (j*B + b)
    node_source: torch.Tensor  # [M] index of each masked node's atom in the source batch
    num_graphs: int  # n*B (copies whose mask is skipped are empty graphs)
    num_copies: int  # n
    num_source_graphs: int  # B
    masked_atom: torch.Tensor  # [n*B] global index of the masked atom in the source batch, -1: skipped
    source_graph: torch.Tensor  # [n*B] source molecule b of each copy graph (label index)
    masked_element: torch.Tensor  # [n*B] atomic number of the masked atom (0 where skipped)
    k_idx: torch.Tensor  # [P] neighbour k, index into the masked nodes
    g_idx: torch.Tensor  # [P] copy graph id of the pair (= index of its masked atom)
    displacement: torch.Tensor  # [P, 3] r = p_masked − p_k (no grad), Å

    @property
    def num_pairs(self) -> int:
        return int(self.k_idx.shape[0])


def graph_sizes(batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
    return torch.bincount(batch, minlength=num_graphs)


def sample_mask_indices(
    batch: torch.Tensor, num_graphs: int, num_masks: int, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """Return [num_masks, num_graphs] global atom indices (−1 where skipped).

    ``batch`` must be sorted (PyG batches are). One permutation per molecule:
    argsort of ``graph_id + u`` with u ~ U[0,1) keeps molecules contiguous and
    shuffles the atoms inside each one.
    """
    n_atoms = batch.shape[0]
    device = batch.device
    key_device = generator.device if generator is not None else device
    keys = torch.rand(n_atoms, generator=generator, dtype=torch.float64, device=key_device)
    keys = keys.to(device) + batch.to(torch.float64)
    order = torch.argsort(keys)  # permuted atoms, grouped by graph
    sizes = graph_sizes(batch, num_graphs)
    ptr = torch.cumsum(sizes, 0) - sizes
    rank = torch.arange(n_atoms, device=device) - ptr[batch[order]]
    graph_of = batch[order]
    out = torch.full((num_masks, num_graphs), -1, dtype=torch.long, device=device)
    sel = rank < num_masks
    out[rank[sel], graph_of[sel]] = order[sel]
    # skip molecules that would keep no atom
    out[:, sizes < 2] = -1
    return out


def _neighbour_pairs(positions, edge_index, shifts, batch, masked_flat, new_index, num_graphs: int):
    """(k_idx, g_idx, displacement) of the pairs (masked atom, former neighbour k).

    The neighbours are the senders of the ORIGINAL edges received by the masked
    atom (k != the masked atom itself, which a periodic self-image edge could give);
    ``masked_flat`` [n, N] marks the masked atom of each copy, ``new_index`` maps
    node (j, a) at j*N + a to its index among the masked copies' nodes.
    """
    N = positions.shape[0]
    sender, receiver = edge_index[0], edge_index[1]
    recv_masked = masked_flat[:, receiver] & (sender != receiver)[None, :]  # [n, E]
    pj, pe = recv_masked.nonzero(as_tuple=True)
    k_old = sender[pe]
    k_idx = new_index[pj * N + k_old]
    g_idx = pj * num_graphs + batch[k_old]
    displacement = (positions[receiver[pe]] - positions[k_old] + shifts[pe]).detach()
    return k_idx, g_idx, displacement


def build_masked_batch(
    positions: torch.Tensor,
    atomic_numbers: torch.Tensor,
    edge_index: torch.Tensor,
    shifts: torch.Tensor,
    batch: torch.Tensor,
    num_graphs: int,
    mask_indices: torch.Tensor,
) -> MaskedBatch:
    """Build the masked copies for ``mask_indices`` [n, B] (−1: skip that copy).

    Each valid mask index must belong to molecule b (column b) and the indices of
    one molecule must be distinct; ``sample_mask_indices`` guarantees both.
    """
    if mask_indices.dim() != 2 or mask_indices.shape[1] != num_graphs:
        raise ValueError(f"mask_indices must have shape [n, {num_graphs}], got {tuple(mask_indices.shape)}")
    device = positions.device
    n = mask_indices.shape[0]
    N = positions.shape[0]
    B = num_graphs
    valid = mask_indices >= 0  # [n, B]
    if bool(valid.any()):
        owner = batch[mask_indices[valid]]
        expected = torch.arange(B, device=device).expand(n, B)[valid]
        if not torch.equal(owner, expected):
            raise ValueError("mask_indices[j, b] must be an atom of molecule b")

    # keep[j, a]: atom a present in copy j (its molecule is masked in copy j, and it is not the masked atom)
    keep = valid[:, batch].clone()  # [n, N]
    copy_ids = torch.arange(n, device=device)
    vj, vb = valid.nonzero(as_tuple=True)
    masked_flat = torch.zeros(n, N, dtype=torch.bool, device=device)
    masked_flat[vj, mask_indices[vj, vb]] = True
    keep &= ~masked_flat
    keep_flat = keep.reshape(-1)  # [n*N], node (j, a) at j*N + a
    new_index = torch.cumsum(keep_flat.to(torch.long), 0) - 1  # old -> new for kept nodes

    node_src = keep_flat.nonzero(as_tuple=True)[0]
    atom = node_src % N
    copy_of_node = node_src // N
    m_positions = positions.detach()[atom]
    m_numbers = atomic_numbers[atom]
    m_batch = copy_of_node * B + batch[atom]

    sender, receiver = edge_index[0], edge_index[1]
    offs = (copy_ids * N)[:, None]  # [n, 1]
    s_all = (sender[None, :] + offs).reshape(-1)
    r_all = (receiver[None, :] + offs).reshape(-1)
    keep_e = keep_flat[s_all] & keep_flat[r_all]
    m_edge_index = torch.stack([new_index[s_all[keep_e]], new_index[r_all[keep_e]]])
    m_shifts = shifts.repeat(n, 1)[keep_e]

    k_idx, g_idx, displacement = _neighbour_pairs(positions, edge_index, shifts, batch, masked_flat, new_index, B)

    masked_atom = mask_indices.reshape(-1)
    source_graph = torch.arange(B, device=device).repeat(n)
    masked_element = torch.where(
        masked_atom >= 0, atomic_numbers[masked_atom.clamp(min=0)], torch.zeros_like(masked_atom)
    )
    return MaskedBatch(
        positions=m_positions,
        atomic_numbers=m_numbers,
        edge_index=m_edge_index,
        shifts=m_shifts,
        batch=m_batch,
        node_source=atom,
        num_graphs=n * B,
        num_copies=n,
        num_source_graphs=B,
        masked_atom=masked_atom,
        source_graph=source_graph,
        masked_element=masked_element,
        k_idx=k_idx,
        g_idx=g_idx,
        displacement=displacement,
    )
