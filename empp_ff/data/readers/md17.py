"""MD17 (sGDML) npz reader: keys z, R, E ([M,1] or [M]), F; kcal/mol and kcal/mol/Å."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from empp_ff.data.readers._common import KCAL_MOL, check_exists, missing_keys_error, open_npz
from empp_ff.data.structure import Structure


def read_npz_trajectory(
    path: str, fmt: str, z_key: str, r_key: str, e_key: str, f_key: str, name_key: str | None
) -> Iterator[Structure]:
    """Shared MD17/rMD17 loop: one fixed composition, M frames, kcal/mol -> eV."""
    with open_npz(path) as d:
        keys = set(d.files)
        if z_key not in keys or r_key not in keys:
            raise missing_keys_error(path, fmt, keys, [z_key, r_key, f"optional: {e_key}, {f_key}"])
        z = np.asarray(d[z_key]).astype(np.int64)
        R = np.asarray(d[r_key])
        E = d[e_key] if e_key in keys else None
        F = d[f_key] if f_key in keys else None
        name = str(d[name_key]) if name_key and name_key in keys else os.path.splitext(os.path.basename(path))[0]
    if R.ndim != 3 or R.shape[1:] != (z.shape[0], 3):
        raise ValueError(f"{path!r}: {r_key!r} must have shape [M, {z.shape[0]}, 3], got {R.shape}")
    m = R.shape[0]
    if E is not None:
        E = np.asarray(E, dtype=np.float64).reshape(-1)
        if E.shape[0] != m:
            raise ValueError(f"{path!r}: {e_key!r} has {E.shape[0]} values for {m} frames")
        E = E * KCAL_MOL
    if F is not None:
        if F.shape != R.shape:
            raise ValueError(f"{path!r}: {f_key!r} shape {F.shape} does not match {r_key!r} shape {R.shape}")
    for i in range(m):
        yield Structure(
            atomic_numbers=z,
            positions=R[i],
            energy=None if E is None else float(E[i]),
            forces=None if F is None else np.asarray(F[i], dtype=np.float64) * KCAL_MOL,
            name=name,
        )


def read_md17(path: str | os.PathLike, **_: object) -> Iterator[Structure]:
    """Yield MD17 frames in eV/Å (energy and forces optional)."""
    p = check_exists(path)
    return read_npz_trajectory(p, "md17", "z", "R", "E", "F", "name")
