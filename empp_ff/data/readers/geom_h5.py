"""GEOM-style HDF5 reader: one group per molecule, conformers stacked.

Per group: ``atomic_numbers`` [N], ``positions`` [C,N,3], optional ``energy`` [C]
and ``forces`` [C,N,3] (dataset names = energy_key / forces_key). The file (or
group) attribute ``units`` is honoured: a bare energy unit ("kcal/mol",
"Hartree") or "positions: Angstrom; energy: eV; forces: eV/Angstrom". Default eV/Å.
Reads one molecule group at a time, so memory is bounded by the largest group.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import h5py
import numpy as np

from empp_ff.data.readers._common import check_exists, missing_keys_error, open_hdf5, parse_units_attr
from empp_ff.data.structure import Structure


def _iter(path: str, energy_key: str, forces_key: str) -> Iterator[Structure]:
    with open_hdf5(path) as f:
        file_units = f.attrs.get("units")
        groups = [(k, g) for k, g in f.items() if isinstance(g, h5py.Group)]
        if not groups:
            raise missing_keys_error(path, "geom_h5", f.keys(), ["<molecule group>/atomic_numbers", "positions"])
        for gname, g in groups:
            if "atomic_numbers" not in g or "positions" not in g:
                expected = ["atomic_numbers", "positions", f"optional: {energy_key}, {forces_key}"]
                raise missing_keys_error(f"{path}:/{gname}", "geom_h5", g.keys(), expected)
            e_fac, l_fac, f_fac = parse_units_attr(g.attrs.get("units", file_units))
            z = np.asarray(g["atomic_numbers"][()], dtype=np.int64)
            pos = np.asarray(g["positions"][()], dtype=np.float64) * l_fac
            if pos.ndim == 2:
                pos = pos[None]
            c = pos.shape[0]
            en = np.asarray(g[energy_key][()], dtype=np.float64).reshape(-1) * e_fac if energy_key in g else None
            fo = np.asarray(g[forces_key][()], dtype=np.float64).reshape(pos.shape) * f_fac if forces_key in g else None
            if en is not None and en.shape[0] != c:
                raise ValueError(f"{path}:/{gname}: {energy_key!r} has {en.shape[0]} values for {c} conformers")
            for i in range(c):
                yield Structure(
                    atomic_numbers=z,
                    positions=pos[i],
                    energy=None if en is None else float(en[i]),
                    forces=None if fo is None else fo[i],
                    name=gname,
                )


def read_geom_h5(
    path: str | os.PathLike, energy_key: str = "energy", forces_key: str = "forces", **_: object
) -> Iterator[Structure]:
    """Yield every conformer of every molecule group, converted to eV/Å."""
    return _iter(check_exists(path), energy_key, forces_key)


def looks_like_geom_h5(f: h5py.File) -> bool:
    """True if some top-level group carries an ``atomic_numbers`` dataset."""
    for g in f.values():
        if isinstance(g, h5py.Group) and "atomic_numbers" in g:
            return True
    return False
