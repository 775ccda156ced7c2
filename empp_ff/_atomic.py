"""Atomic file replacement: readers never see a half-written file.

Every artefact empp-ff writes (checkpoints, metrics, stores, model files, the
LAMMPS plugin) goes through :func:`atomic_path`: write to a temporary file in the
target's directory, fsync it, then ``os.replace`` it over the target. A crash or
``kill -9`` at any moment leaves either the old file or the new one, never a
mixture, and no temporary file is left behind after an exception (after a kill,
the run-directory protocol removes leftovers on the next start). An OSError of
the write names the target file, so a full disk says which file it was writing.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Union

from empp_ff._faults import window


def _umask_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: Union[str, os.PathLike], mode: Optional[int] = None) -> Iterator[str]:
    """Yield a temporary path to write; on success it replaces ``path``.

    ``mode``: the file's permission bits (default: what ``open()`` would give,
    i.e. 0o666 less the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _umask_mode() if mode is None else mode)
        window("tmp", path)
        os.replace(tmp, path)
        window("done", path)
    except OSError as exc:
        _unlink_quietly(tmp)
        # e.g. ENOSPC from a write: name the file meant. Not an OSError of no system call (errno None:
        # a reader's parse error, ASE's XYZError), which belongs to the file being read.
        if exc.errno is not None and exc.filename in (None, tmp):
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _unlink_quietly(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
