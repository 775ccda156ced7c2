"""rMD17 npz reader: nuclear_charges, coords, energies, forces; kcal/mol and kcal/mol/Å."""

from __future__ import annotations

import os
from collections.abc import Iterator

from empp_ff.data.readers._common import check_exists
from empp_ff.data.readers.md17 import read_npz_trajectory
from empp_ff.data.structure import Structure


def read_rmd17(path: str | os.PathLike, **_: object) -> Iterator[Structure]:
    """Yield rMD17 frames (the recomputed ``energies``/``forces``, not ``old_*``) in eV/Å."""
    p = check_exists(path)
    return read_npz_trajectory(p, "rmd17", "nuclear_charges", "coords", "energies", "forces", None)
