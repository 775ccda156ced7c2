"""A JSON-ready summary of a data file in any supported format (``empp-ff data info``).

A store is summarised from its attributes; any other format is read once
through the validating readers (so a file that training would refuse is
reported with the same error), in constant memory.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["summarise"]


def _store_summary(path: str) -> dict[str, Any]:
    from empp_ff.data.store import StructureStore

    with StructureStore(path) as store:
        attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v if isinstance(v, (int, float, str, bool))
                     else str(v)) for k, v in store.attrs.items()}
        return {**attrs, "format": "store", "n_structures": len(store),
                "species": [int(z) for z in store.species()]}


def _stream_summary(path: str, fmt: str, energy_key: str, forces_key: str) -> dict[str, Any]:
    from empp_ff.data.readers import read_structures

    n = n_energy = n_forces = n_periodic = 0
    species: set[int] = set()
    atoms_min, atoms_max, atoms_sum = None, 0, 0
    e_min, e_max = np.inf, -np.inf
    for s in read_structures(path, fmt=fmt, energy_key=energy_key, forces_key=forces_key):
        n += 1
        species.update(np.unique(s.atomic_numbers).tolist())
        atoms_min = s.n_atoms if atoms_min is None else min(atoms_min, s.n_atoms)
        atoms_max, atoms_sum = max(atoms_max, s.n_atoms), atoms_sum + s.n_atoms
        if s.energy is not None:
            n_energy += 1
            e_min, e_max = min(e_min, s.energy), max(e_max, s.energy)
        n_forces += s.forces is not None
        n_periodic += bool(s.pbc.any())
    summary: dict[str, Any] = {
        "format": fmt, "n_structures": n, "species": sorted(int(z) for z in species),
        "atoms_per_structure": {"min": atoms_min, "max": atoms_max, "mean": atoms_sum / n if n else None},
        "n_with_energy": n_energy, "n_with_forces": n_forces, "n_periodic": n_periodic,
        "units": {"energy": "eV", "length": "Angstrom", "forces": "eV/Angstrom"},
    }
    if n_energy:
        summary["energy_ev"] = {"min": float(e_min), "max": float(e_max)}
    return summary


def summarise(path: str | os.PathLike, fmt: str | None = None, energy_key: str = "energy",
              forces_key: str = "forces") -> dict[str, Any]:
    """Counts, species, sizes and labels of the structures in ``path`` (eV, Å after conversion)."""
    from empp_ff.data.readers import detect_format

    p = os.fspath(path)
    fmt = fmt or detect_format(p)
    summary = _store_summary(p) if fmt == "store" else _stream_summary(p, fmt, energy_key, forces_key)
    return {"path": p, **summary}
