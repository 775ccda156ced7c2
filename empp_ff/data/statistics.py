"""Dataset statistics the model needs: per-element reference energies (E0s), shift,
scale and the average neighbour count used to normalise message passing.

Everything works on a (seeded) sample of indices so that 37 M-structure stores
cost seconds, and reads structures one at a time (never the whole file).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from empp_ff.data.store import StructureStore
from empp_ff.neighbours import neighbour_graph

__all__ = ["fit_e0s", "compute_statistics"]


def _sample(indices: Sequence[int] | np.ndarray, max_n: int | None, seed: int) -> np.ndarray:
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if max_n is not None and idx.shape[0] > max_n:
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=max_n, replace=False))
    return idx


def _atomic_numbers(store: StructureStore, i: int) -> np.ndarray:
    return store.get_atomic_numbers(int(i))


def fit_e0s(
    store: StructureStore,
    indices: Sequence[int] | np.ndarray,
    species: Sequence[int] | None = None,
    max_structures: int | None = 100_000,
    seed: int = 0,
) -> dict[int, float]:
    """Per-element reference energies E0[z] (eV) by least squares: E_i ≈ Σ_z n_iz E0[z].

    Solved with ``np.linalg.lstsq`` (rcond=None), i.e. the minimum-norm solution
    when the composition matrix is rank-deficient. Single-composition data (one
    MD17 molecule) is rank 1: the E0s are then not identifiable and the min-norm
    solution spreads the mean energy over elements in proportion to their counts
    (E0 = c · mean(E) / |c|²); Σ n_z E0[z] still equals the mean energy, which is all
    the model needs. Species with no data get 0.0. Structures without energy are
    skipped. ``species`` fixes the output keys (e.g. the model's species); an element
    in the data but not in ``species`` is an error.
    """
    idx = _sample(indices, max_structures, seed)
    energies = store.energies()
    idx = idx[np.isfinite(energies[idx])]
    if idx.size == 0:
        raise ValueError(f"fit_e0s: none of the {len(indices)} selected structures in {store.path!r} has an energy")
    zs = [_atomic_numbers(store, i) for i in idx]
    present = np.unique(np.concatenate(zs))
    sp = np.asarray(sorted(set(int(z) for z in (present if species is None else species))), dtype=np.int64)
    extra = sorted(set(present.tolist()) - set(sp.tolist()))
    if extra:
        raise ValueError(f"fit_e0s: elements {extra} occur in the data but not in species={sp.tolist()}")
    col = {int(z): k for k, z in enumerate(sp)}
    X = np.zeros((idx.size, sp.size), dtype=np.float64)
    for r, z in enumerate(zs):
        u, c = np.unique(z, return_counts=True)
        X[r, [col[int(a)] for a in u]] = c
    coef, *_ = np.linalg.lstsq(X, energies[idx], rcond=None)
    return {int(z): float(coef[k]) for k, z in enumerate(sp)}


def compute_statistics(
    store: StructureStore,
    indices: Sequence[int] | np.ndarray,
    e0s: Mapping[int, float],
    r_max: float,
    max_structures: int | None = 20_000,
    seed: int = 0,
) -> dict[str, float | int | None]:
    """Shift/scale statistics over (a seeded sample of at most ``max_structures`` of) ``indices``.

    Returns:
      mean_interaction_energy_per_atom: mean of (E - Σ E0)/n  (the model's shift)
      interaction_energy_per_atom_std:  std of the same
      rms_force_component:              RMS of all force components (None if no forces)
      rms_forces:                       the scale: rms_force_component, else the std above,
                                        else 1.0
      energy_mean, energy_std:          of total energies (std falls back to 1.0 if 0 / none)
      avg_num_neighbors:                mean neighbours per atom within r_max
      n_structures, n_with_energy, n_with_forces: counts behind the numbers
    Structures missing a label are skipped for the statistics that need it.
    """
    e0 = {int(k): float(v) for k, v in e0s.items()}
    idx = _sample(indices, max_structures, seed)
    if idx.size == 0:
        raise ValueError("compute_statistics: no indices given")
    e_tot: list[float] = []
    e_int_pa: list[float] = []
    f_sq, f_cnt = 0.0, 0
    n_edges, n_atoms, n_forces = 0, 0, 0
    for i in idx:
        s = store[int(i)]
        n = s.n_atoms
        ei, _ = neighbour_graph(s.positions, r_max, s.cell, s.pbc)
        n_edges += ei.shape[1]
        n_atoms += n
        if s.energy is not None:
            missing = sorted(set(np.unique(s.atomic_numbers).tolist()) - set(e0))
            if missing:
                raise ValueError(f"compute_statistics: no E0 for elements {missing} (e0s has {sorted(e0)})")
            ref = sum(e0[int(z)] for z in s.atomic_numbers)
            e_tot.append(s.energy)
            e_int_pa.append((s.energy - ref) / max(n, 1))
        if s.forces is not None:
            f_sq += float(np.square(s.forces).sum())
            f_cnt += s.forces.size
            n_forces += 1
    rms_fc = float(np.sqrt(f_sq / f_cnt)) if f_cnt else None
    int_std = float(np.std(e_int_pa)) if e_int_pa else 0.0
    if rms_fc is not None and rms_fc > 1e-12:
        scale = rms_fc
    elif int_std > 1e-12:
        scale = int_std
    else:
        scale = 1.0
    e_std = float(np.std(e_tot)) if e_tot else 0.0
    return {
        "mean_interaction_energy_per_atom": float(np.mean(e_int_pa)) if e_int_pa else 0.0,
        "interaction_energy_per_atom_std": int_std,
        "rms_force_component": rms_fc,
        "rms_forces": scale,
        "energy_mean": float(np.mean(e_tot)) if e_tot else 0.0,
        "energy_std": e_std if e_std > 1e-12 else 1.0,
        "avg_num_neighbors": n_edges / n_atoms if n_atoms else 0.0,
        "n_structures": int(idx.size),
        "n_with_energy": len(e_tot),
        "n_with_forces": n_forces,
    }
