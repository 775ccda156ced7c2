"""Reader for our own HDF5 store (already eV/Å): iterate a StructureStore."""

from __future__ import annotations

import os
from collections.abc import Iterator

from empp_ff.data.readers._common import check_exists
from empp_ff.data.structure import Structure


def _iter(path: str) -> Iterator[Structure]:
    from empp_ff.data.store import StructureStore

    with StructureStore(path) as s:
        for i in range(len(s)):
            yield s[i]


def read_store(path: str | os.PathLike, **_: object) -> Iterator[Structure]:
    """Yield the store's structures in order."""
    return _iter(check_exists(path))
