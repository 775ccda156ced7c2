"""ASE database reader (ase.db; SQLite/JSON). Units assumed eV, Å, eV/Å."""

from __future__ import annotations

import os
from collections.abc import Iterator

import ase.db

from empp_ff.data.readers._ase import KeyChecker, ase_frames, atoms_to_structure
from empp_ff.data.readers._common import check_exists
from empp_ff.data.structure import Structure


def _iter(path: str, energy_key: str, forces_key: str) -> Iterator[Structure]:
    check = KeyChecker(path, "asedb", energy_key, forces_key)
    for row in ase_frames(path, "an ASE database", lambda: ase.db.connect(path).select()):
        atoms = row.toatoms()
        # key_value_pairs hold scalar labels, row.data arrays (e.g. custom forces).
        extra = {**dict(row.key_value_pairs), **dict(row.get("data", {}) or {})}
        check(atoms, extra)
        name = str(row.key_value_pairs.get("name", ""))
        yield atoms_to_structure(atoms, energy_key, forces_key, name=name, extra=extra)
    check.finish()


def read_asedb(
    path: str | os.PathLike, energy_key: str = "energy", forces_key: str = "forces", **_: object
) -> Iterator[Structure]:
    """Yield rows in id order; labels from the stored calculator, key_value_pairs or data."""
    return _iter(check_exists(path), energy_key, forces_key)
