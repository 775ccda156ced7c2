"""Extended XYZ reader (ase.io.iread, lazy). Units assumed eV, Å, eV/Å."""

from __future__ import annotations

import os
from collections.abc import Iterator

import ase.io

from empp_ff.data.readers._ase import KeyChecker, ase_frames, atoms_to_structure
from empp_ff.data.readers._common import check_exists
from empp_ff.data.structure import Structure


def _iter(path: str, energy_key: str, forces_key: str) -> Iterator[Structure]:
    check = KeyChecker(path, "extxyz", energy_key, forces_key)
    for atoms in ase_frames(path, "extended XYZ", lambda: ase.io.iread(path, index=":", format="extxyz")):
        check(atoms)
        yield atoms_to_structure(atoms, energy_key, forces_key)
    check.finish()


def read_extxyz(
    path: str | os.PathLike, energy_key: str = "energy", forces_key: str = "forces", **_: object
) -> Iterator[Structure]:
    """Yield frames; labels from atoms.info/arrays or the attached calculator results."""
    return _iter(check_exists(path), energy_key, forces_key)
