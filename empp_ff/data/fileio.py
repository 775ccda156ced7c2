"""Opening data files: an empty, truncated or mislabelled file is an error that names
the file and the cause, never a library's raw exception (zipfile, h5py, numpy)."""

from __future__ import annotations

import contextlib
import os
import zipfile
import zlib
from collections.abc import Iterator
from typing import Any

__all__ = ["DataError", "open_npz", "open_hdf5"]


class DataError(ValueError):
    """A data file that cannot be used as it is; the message names the file and the cause."""


def _head(path: str, n: int = 8) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def _truncated_npz(path: str, exc: BaseException) -> DataError:
    return DataError(
        f"{path!r}: cannot read the .npz archive ({type(exc).__name__}: {exc}); the file is "
        "probably truncated (an interrupted download or copy)"
    )


@contextlib.contextmanager
def open_npz(path: str) -> Iterator[Any]:
    """``numpy.load`` of an .npz archive, with an error naming the file and the cause
    for an empty, truncated or non-zip file (numpy would say 'pickled data' or EOF)."""
    import numpy as np

    head = _head(path)
    if not head:
        raise DataError(f"{path!r}: the file is empty (0 bytes); expected a NumPy .npz archive")
    if not head.startswith(b"PK"):
        raise DataError(
            f"{path!r} is not a NumPy .npz archive (a zip file): it starts with {head!r}. "
            "Pass the right file, or name its format (data.format, or --format)."
        )
    try:
        d = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise _truncated_npz(path, exc) from exc
    try:
        yield d
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:  # members are read lazily
        raise _truncated_npz(path, exc) from exc
    finally:
        d.close()


def open_hdf5(path: str) -> Any:
    """``h5py.File(path, 'r')``, with an error naming the file and the cause for an
    empty, truncated or non-HDF5 file (h5py says 'file signature not found')."""
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        size = os.path.getsize(path)
        what = "the file is empty (0 bytes)" if size == 0 else f"not a readable HDF5 file ({exc})"
        raise DataError(f"{path!r}: {what}; expected an HDF5 file (.h5)") from exc
