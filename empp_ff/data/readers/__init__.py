"""Format readers. Each yields :class:`~empp_ff.data.structure.Structure` in eV, Å, eV/Å.

Format names are a user-facing contract (CLI ``--format``):
``md17``, ``rmd17``, ``extxyz``, ``asedb``, ``geom_h5``, ``geom_msgpack``, ``store``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from empp_ff.data.readers._common import check_exists, open_hdf5, open_npz
from empp_ff.data.structure import Structure
from empp_ff.data.validation import ValidationReport, validated

__all__ = ["FORMATS", "read_structures", "detect_format"]

STORE_MARKER = "empp_ff_store"


def _reader(fmt: str) -> Callable[..., Iterator[Structure]]:
    # Imported on demand: extxyz/asedb pull in parts of ase that npz users never need.
    if fmt == "md17":
        from empp_ff.data.readers.md17 import read_md17 as r
    elif fmt == "rmd17":
        from empp_ff.data.readers.rmd17 import read_rmd17 as r
    elif fmt == "extxyz":
        from empp_ff.data.readers.extxyz import read_extxyz as r
    elif fmt == "asedb":
        from empp_ff.data.readers.asedb import read_asedb as r
    elif fmt == "geom_h5":
        from empp_ff.data.readers.geom_h5 import read_geom_h5 as r
    elif fmt == "geom_msgpack":
        from empp_ff.data.readers.geom_msgpack import read_geom_msgpack as r
    elif fmt == "store":
        from empp_ff.data.readers.store import read_store as r
    else:
        raise ValueError(f"Unknown format {fmt!r}; expected one of {list(FORMATS)}")
    return r


FORMATS: tuple[str, ...] = ("md17", "rmd17", "extxyz", "asedb", "geom_h5", "geom_msgpack", "store")


def detect_format(path: str | os.PathLike) -> str:
    """Guess the format from the extension and, for npz/HDF5, from the keys inside."""
    p = check_exists(path)
    ext = os.path.splitext(p)[1].lower()
    if ext == ".npz":
        with open_npz(p) as d:
            keys = set(d.files)
        if {"z", "R"} <= keys:
            return "md17"
        if {"nuclear_charges", "coords"} <= keys:
            return "rmd17"
        raise ValueError(
            f"{p!r}: cannot detect npz format. Found keys {sorted(keys)}; expected md17 keys "
            f"['z', 'R', 'E', 'F'] or rmd17 keys ['nuclear_charges', 'coords', 'energies', 'forces']."
        )
    if ext in (".xyz", ".extxyz"):
        return "extxyz"
    if ext in (".db", ".json", ".aselmdb"):
        return "asedb"
    if ext == ".msgpack":
        return "geom_msgpack"
    import h5py

    if ext in (".h5", ".hdf5", ".hdf") or h5py.is_hdf5(p):
        from empp_ff.data.readers.geom_h5 import looks_like_geom_h5

        with open_hdf5(p) as f:
            if STORE_MARKER in f.attrs:
                return "store"
            if looks_like_geom_h5(f):
                return "geom_h5"
            found = sorted(f.keys())
            attrs = sorted(f.attrs.keys())
        raise ValueError(
            f"{p!r}: cannot detect HDF5 format. Found top-level keys {found} and attributes {attrs}; expected "
            f"the {STORE_MARKER!r} attribute (store) or groups holding 'atomic_numbers'/'positions' (geom_h5)."
        )
    raise ValueError(
        f"{p!r}: unknown file type {ext!r}; expected .npz (md17/rmd17), .xyz/.extxyz, .db (asedb), "
        f".h5/.hdf5 (geom_h5/store), .msgpack (geom_msgpack), or pass fmt= one of {list(FORMATS)}."
    )


def read_structures(
    path: str | os.PathLike,
    fmt: str | None = None,
    energy_key: str = "energy",
    forces_key: str = "forces",
    drop_nonfinite: bool = False,
    allow_missing_labels: bool = False,
    report: ValidationReport | None = None,
) -> Iterator[Structure]:
    """Lazily yield validated Structures from ``path`` (format detected when ``fmt`` is None).

    Raises FileNotFoundError for a missing file and ValueError (``DataError``) for an
    unknown format, missing keys, an unreadable file or non-finite values, naming the
    file and the cause (see :mod:`empp_ff.data.validation` for ``drop_nonfinite``,
    ``allow_missing_labels`` and what ``report`` counts).
    """
    p = check_exists(path)
    fmt = detect_format(p) if fmt is None else fmt
    structures = _reader(fmt)(p, energy_key=energy_key, forces_key=forces_key)
    return validated(structures, p, fmt, drop_nonfinite=drop_nonfinite,
                     allow_missing_labels=allow_missing_labels, report=report)
