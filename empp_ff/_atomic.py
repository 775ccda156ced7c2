"""Atomic file replacement: readers never see a half-written file.

Every artefact empp-ff writes (checkpoints, metrics, stores, model files, the
LAMMPS plugin) goes through :func:`atomic_path`: write to a temporary file in the
target's directory, fsync it, then ``os.replace`` it over the target. A crash or
``kill -9`` at any moment leaves either the old file or the new one, never a
mixture, and no temporary file is left behind after an exception or a signal
(``empp_ff._signals``: the move over the target is not interrupted). An OSError of
the write names the target file, so a full disk says which file it was writing.

A temporary's name says whose it is: ``.<target>.empp-ff-<host>-<pid>-<random>.tmp``
(``<host>``: 8 hex digits of the host name's hash). After a ``kill -9`` the next write
of the same target removes the temporaries of that target whose process is gone
(same host, pid no longer running); nothing else is ever removed: not files of other
programs, not the temporary of a run still in progress.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import Iterator, List, Optional, Union

from empp_ff._faults import window
from empp_ff._signals import deferred

_MARK = "empp-ff"
_TEMPORARY = re.compile(rf"^\.(?P<target>.+)\.{_MARK}-(?P<host>[0-9a-f]{{8}})-(?P<pid>[0-9]+)-[A-Za-z0-9_]+\.tmp$")


def _host() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def temporary_prefix(path: Union[str, os.PathLike]) -> str:
    """The name prefix of this process's temporaries for ``path``."""
    return f".{Path(path).name}.{_MARK}-{_host()}-{os.getpid()}-"


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):  # someone else's live process; or not a pid
        return True
    return True


def stale_target(name: str) -> Optional[str]:
    """The target's name when ``name`` is an empp-ff temporary of a process of this host that no
    longer runs (a leftover of ``kill -9``), else None."""
    match = _TEMPORARY.match(name)
    if match is None or match["host"] != _host() or _running(int(match["pid"])):
        return None
    return match["target"]


def remove_stale_temporaries(path: Union[str, os.PathLike]) -> List[Path]:
    """Delete the leftover temporaries of ``path`` (see :func:`stale_target`); returns them."""
    path = Path(path)
    removed = []
    try:
        names = os.listdir(path.parent)
    except OSError:
        return removed
    for name in names:
        if name.startswith(f".{path.name}.{_MARK}-") and stale_target(name) == path.name:
            (path.parent / name).unlink(missing_ok=True)
            removed.append(path.parent / name)
    return removed


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
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        with deferred():  # a SIGTERM here waits until the target is in place
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
