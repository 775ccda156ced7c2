"""Neighbour lists in the MACE convention: the one module that builds graphs for
training, inference and tests.

``edge_index[0]`` = sender, ``edge_index[1]`` = receiver, and the edge vector is
``positions[receiver] - positions[sender] + shifts[e]`` with Cartesian shifts (Å).
Edges are never truncated: every pair with distance < ``r_max`` (strict, as vesin;
both directions) is kept, including periodic self-images in cells smaller than
the cutoff. The LAMMPS pair style builds the same graph from LAMMPS's own lists
(``tests/test_lammps.py`` checks that it does).

Three builders, one convention (each is the fast path of its caller):

* :func:`neighbour_graph` (numpy, float64): training graphs (data-loader
  workers), data statistics and test graphs. Molecules: dense all-pairs; periodic
  or large systems: vesin. Deterministic edge order.
* :func:`all_pairs_edges` (torch, on the model's device): the ASE calculator's
  molecules, with no host work per call.
* :class:`VerletList` (vesin on the host + a Verlet skin): the ASE calculator's
  periodic and large systems. Candidate pairs within ``r_max + skin`` are cached
  and rebuilt only when an atom has moved more than ``skin / 2`` or the cell,
  periodicity or atomic numbers changed; each call filters them to ``r_max`` with
  the current positions, so the edges are exact.

Importing this module needs numpy only (torch and vesin are imported when used).

Before any periodic list is built, :func:`check_cell` refuses a cell that would make it
huge (a hostile or broken input must not exhaust memory): one whose lattice planes are
so close that an atom has more than :data:`MAX_CELL_IMAGES` periodic images within the
cutoff (a vanishing lattice vector), or so dense that an atom would have more than
:data:`MAX_NEIGHBOURS_PER_ATOM` neighbours on average; and :func:`check_crowding` refuses
atoms piled up in a few places (which a cell's average density does not show).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

__all__ = ["neighbour_graph", "all_pairs_edges", "VerletList", "check_cell", "check_crowding"]

_DENSE_MAX_ATOMS = 3000  # above this, all-pairs O(n^2) memory is wasteful -> vesin cell list
#: Periodic images of the cell within the cutoff of one atom, at most (a cell 0.5 Å thick
#: along all three directions with a 10 Å cutoff has 41^3 = 68921).
MAX_CELL_IMAGES = 100_000
#: Average neighbours per atom within the cutoff, at most (dense matter has ~80 within 6 Å
#: and ~400 within 10 Å).
MAX_NEIGHBOURS_PER_ATOM = 5_000


def check_cell(cell, pbc, r_max: float, n_atoms: int) -> None:
    """Refuse (ValueError, one line) a periodic cell whose neighbour list would be huge.

    The thickness of the cell across periodic lattice vector i (the distance between its
    lattice planes, within the periodic directions) sets how many images of the cell lie
    within ``r_max`` of an atom: 2*ceil(r_max/thickness)+1 along that direction."""
    periodic = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    if not periodic.any():
        return
    vectors = np.asarray(cell, dtype=np.float64).reshape(3, 3)[periodic]
    if not np.isfinite(vectors).all():
        raise ValueError(f"the cell has non-finite lattice vectors: {vectors.tolist()}")

    def span(rows) -> float:  # the length / area / volume spanned by the rows
        return float(np.sqrt(max(np.linalg.det(rows @ rows.T), 0.0))) if len(rows) else 1.0

    volume = span(vectors)
    images = 1.0
    for axis, index in enumerate(np.flatnonzero(periodic)):
        others = span(np.delete(vectors, axis, axis=0))
        thickness = volume / others if others > 0 else 0.0
        count = 2 * np.ceil(r_max / thickness) + 1 if thickness > 0 else np.inf
        images *= count
        if images > MAX_CELL_IMAGES:
            raise ValueError(
                f"the cell is too thin for the cutoff: {thickness:.3g} Å across lattice vector {index} (length "
                f"{np.linalg.norm(vectors[axis]):.3g} Å), so every atom would have over {MAX_CELL_IMAGES} periodic "
                f"images within r_max = {r_max} Å; check the cell (a vanishing or parallel lattice vector?)")
    if periodic.all():
        neighbours = n_atoms / volume * 4.0 / 3.0 * np.pi * r_max ** 3
        if neighbours > MAX_NEIGHBOURS_PER_ATOM:
            raise ValueError(
                f"the structure is too dense for a neighbour list: {n_atoms} atoms in {volume:.3g} Å^3 give "
                f"~{neighbours:.3g} neighbours per atom within r_max = {r_max} Å (at most "
                f"{MAX_NEIGHBOURS_PER_ATOM}); check the cell and the units of the positions")


def check_crowding(positions: np.ndarray, r_max: float) -> None:
    """Refuse (ValueError, one line) atoms piled up so that the list would be huge.

    Atoms in one cube of a grid of side r_max/sqrt(3) are all within r_max of each other,
    so the pairs inside the cubes are a lower bound of the list's length (periodic images
    only add to it); it costs one sort of the atoms."""
    n = len(positions)
    if n < 2:
        return
    side = r_max / np.sqrt(3.0) * (1.0 - 1e-9)
    with np.errstate(invalid="ignore", over="ignore"):
        keys = np.floor(np.asarray(positions, dtype=np.float64) / side).astype(np.int64)
    counts = np.unique(keys, axis=0, return_counts=True)[1].astype(np.float64)
    pairs = float((counts * (counts - 1.0)).sum())
    if pairs > n * MAX_NEIGHBOURS_PER_ATOM:
        raise ValueError(
            f"the atoms are piled up: at least {pairs:.3g} pairs lie within r_max = {r_max} Å ({pairs / n:.3g} "
            f"per atom, at most {MAX_NEIGHBOURS_PER_ATOM}); check the positions and their units")


def _vesin_list(cutoff: float):
    try:
        import vesin
    except ImportError as exc:  # pragma: no cover - vesin is a dependency
        raise ImportError("periodic systems need the `vesin` package: pip install vesin") from exc
    return vesin.NeighborList(cutoff=float(cutoff), full_list=True)


def _vesin_pairs(nl, positions: np.ndarray, box: np.ndarray, periodic) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, S) of all pairs within the list's cutoff: vector = pos[j] - pos[i] + S @ box,
    so i is the sender and j the receiver; S are integer cell shifts (as float64)."""
    try:
        i, j, S = nl.compute(points=positions, box=box, periodic=periodic, quantities="ijS")
    except RuntimeError as exc:  # vesin's own words, e.g. "the box matrix is not invertible"
        raise ValueError(
            f"cannot build the neighbour list of this structure (cell {np.asarray(box).tolist()}, pbc "
            f"{periodic}): {exc}"
        ) from exc
    return np.asarray(i, np.int64), np.asarray(j, np.int64), np.asarray(S, dtype=np.float64)


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

    box = np.zeros((3, 3)) if cell is None else np.asarray(cell, dtype=np.float64)
    check_cell(box, periodic, r_max, n)
    check_crowding(pos, r_max)
    i, j, S = _vesin_pairs(_vesin_list(r_max), pos, box, periodic.tolist() if periodic.any() else False)
    keep = ~((i == j) & ~S.any(axis=1))  # drop a zero-shift self pair if a backend ever emits one
    i, j, S = i[keep], j[keep], S[keep]
    return _sorted(i, j, S @ box)


def all_pairs_edges(pos, r_max: float):
    """(edge_index [2, E], zero shifts [E, 3], lengths [E]) of a molecule ``pos`` [N, 3], on its
    device; or of R copies of one molecule ``pos`` [R, N, 3] as one graph of R * N atoms (atom
    k of copy r is r * N + k) in which no edge joins two copies."""
    import torch

    with torch.no_grad():
        dist = torch.cdist(pos, pos, compute_mode="donot_use_mm_for_euclid_dist")
        mask = dist < r_max
        mask.diagonal(dim1=-2, dim2=-1).fill_(False)
        index = mask.nonzero(as_tuple=True)
        lengths = dist[index]
        if pos.dim() == 3:  # (copy, i, j) -> atoms of the flattened graph
            n = pos.shape[1]
            index = (index[0] * n + index[1], index[0] * n + index[2])
        edge_index = torch.stack(index)
    shifts = torch.zeros((edge_index.shape[1], 3), dtype=pos.dtype, device=pos.device)
    return edge_index, shifts, lengths


class VerletList:
    """Exact edges within ``r_max`` from cached vesin candidates within ``r_max + skin``.

    ``builds`` counts the host-side vesin builds (for tests and diagnostics).
    """

    def __init__(self, r_max: float, skin: float, device, dtype):
        self.r_max = float(r_max)
        self.skin = float(skin)
        self.device = device
        self.dtype = dtype
        self.builds = 0
        self._vesin = None
        self._cache: Optional[Dict[str, Any]] = None

    def needs_rebuild(self, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, numbers: np.ndarray) -> bool:
        c = self._cache
        if c is None:
            return True
        if (
            len(positions) != len(c["positions"])
            or not np.array_equal(pbc, c["pbc"])
            or not np.array_equal(cell, c["cell"])
            or not np.array_equal(numbers, c["numbers"])
        ):
            return True
        if self.skin == 0.0:
            return True
        moved2 = ((positions - c["positions"]) ** 2).sum(axis=1).max()
        return bool(moved2 > (0.5 * self.skin) ** 2)

    def build(self, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, numbers: np.ndarray) -> None:
        import torch

        if self._vesin is None:
            self._vesin = _vesin_list(self.r_max + self.skin)
        cell, pbc, positions = cell.copy(), pbc.copy(), positions.copy()
        check_cell(cell, pbc, self.r_max + self.skin, len(positions))
        check_crowding(positions, self.r_max + self.skin)
        i, j, S = _vesin_pairs(self._vesin, positions, cell, pbc.tolist())
        self._cache = {
            "positions": positions,
            "cell": cell,
            "pbc": pbc,
            "numbers": numbers.copy(),
            "sender": torch.as_tensor(i, device=self.device),
            "receiver": torch.as_tensor(j, device=self.device),
            "shifts": torch.as_tensor(S @ cell, dtype=self.dtype, device=self.device),
        }
        self.builds += 1

    def edges(self, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, numbers: np.ndarray, pos):
        """(edge_index [2, E], shifts [E, 3], lengths [E]) within r_max for ``pos``
        (the tensor of ``positions`` on the device), rebuilding the candidates if needed."""
        import torch

        if self.needs_rebuild(positions, cell, pbc, numbers):
            self.build(positions, cell, pbc, numbers)
        c = self._cache
        with torch.no_grad():
            vectors = pos[c["receiver"]] - pos[c["sender"]] + c["shifts"]
            lengths = torch.linalg.norm(vectors, dim=1)
            keep = (lengths < self.r_max).nonzero().squeeze(1)
        edge_index = torch.stack([c["sender"][keep], c["receiver"][keep]])
        return edge_index, c["shifts"][keep], lengths[keep]
