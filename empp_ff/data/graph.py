"""Neighbour graphs in the MACE convention.

``edge_index[0]`` = sender, ``edge_index[1]`` = receiver, and the edge vector is
``positions[receiver] - positions[sender] + shifts[e]`` with Cartesian shifts (Å).
Edges are never truncated: every pair with distance < ``r_max`` (strict, as vesin;
both directions) is kept,
including periodic self-images in cells smaller than the cutoff.
"""

from __future__ import annotations

import numpy as np

__all__ = ["neighbour_graph"]

_DENSE_MAX_ATOMS = 3000  # above this, all-pairs O(n^2) memory is wasteful -> vesin cell list


def _sorted(snd: np.ndarray, rcv: np.ndarray, shifts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Deterministic order (sender, receiver, shift) regardless of backend.
    order = np.lexsort((shifts[:, 2], shifts[:, 1], shifts[:, 0], rcv, snd))
    ei = np.stack([snd[order], rcv[order]]).astype(np.int64)
    return ei, np.ascontiguousarray(shifts[order], dtype=np.float64)


def neighbour_graph(
    positions: np.ndarray,
    r_max: float,
    cell: np.ndarray | None = None,
    pbc: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (edge_index int64 [2,E], shifts float64 [E,3]) for all pairs with |d| < r_max.

    Molecules (no pbc): dense vectorised all-pairs, no self edges. Periodic: vesin
    full neighbour list with integer cell shifts converted to Cartesian.
    """
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"positions must have shape [n, 3], got {pos.shape}")
    if not r_max > 0:
        raise ValueError(f"r_max must be > 0, got {r_max}")
    n = pos.shape[0]
    periodic = np.zeros(3, dtype=bool) if pbc is None else np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    if periodic.any() and cell is None:
        raise ValueError(f"pbc={periodic.tolist()} needs a cell")
    if n == 0:
        return np.zeros((2, 0), np.int64), np.zeros((0, 3), np.float64)

    if not periodic.any() and n <= _DENSE_MAX_ATOMS:
        d = pos[None, :, :] - pos[:, None, :]  # d[s, r] = pos[r] - pos[s]
        dist2 = np.einsum("ijk,ijk->ij", d, d)
        mask = dist2 < r_max * r_max
        np.fill_diagonal(mask, False)
        snd, rcv = np.nonzero(mask)
        return np.stack([snd, rcv]).astype(np.int64), np.zeros((snd.shape[0], 3), np.float64)

    import vesin

    box = np.zeros((3, 3)) if cell is None else np.asarray(cell, dtype=np.float64)
    nl = vesin.NeighborList(cutoff=float(r_max), full_list=True)
    i, j, S = nl.compute(points=pos, box=box, periodic=periodic.tolist() if periodic.any() else False, quantities="ijS")
    i, j = np.asarray(i, np.int64), np.asarray(j, np.int64)
    S = np.asarray(S, dtype=np.float64)
    keep = ~((i == j) & ~S.any(axis=1))  # drop a zero-shift self pair if a backend ever emits one
    i, j, S = i[keep], j[keep], S[keep]
    # vesin: vector = pos[j] - pos[i] + S @ cell, so i is the sender and j the receiver.
    return _sorted(i, j, S @ box)
