"""One training per run directory: an exclusive lock held for the whole run.

The lock is ``RUN_DIR/.lock``, held with ``fcntl.flock`` on an open descriptor,
so the kernel releases it on any exit of the process (an exception, Ctrl-C,
``kill -9``, a crash). A lock file left behind by a dead process is therefore
recognised as stale (nobody holds it) and taken over. The file records who
holds it (pid, host, start time, command) so a second training started on a busy
run directory stops with an error that says which process is using it.

On file systems without ``flock`` (some network mounts) the lock falls back to
the recorded pid: alive on this host means busy, dead means stale.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Union

LOCK_NAME = ".lock"


class RunDirBusy(RuntimeError):
    """Another process is training in this run directory."""


def _owner() -> Dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv)[:500],
    }


def _read_owner(path: Path) -> Dict[str, Any]:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """``with RunLock(run_dir): ...``; or ``acquire()`` / ``release()``."""

    def __init__(self, run_dir: Union[str, Path]):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: Optional[int] = None
        self.took_over_stale = False  # a dead process's lock file was found and replaced

    def _busy(self, owner: Dict[str, Any]) -> RunDirBusy:
        who = (f"pid {owner.get('pid')} on {owner.get('host')}, started {owner.get('started')}"
               if owner else "another process")
        return RunDirBusy(
            f"{self.run_dir} is in use by another training ({who}; command: {owner.get('command', '?')}). "
            "Wait for it to finish, or choose another run_dir. If that process no longer exists, "
            f"delete {self.path}."
        )

    def acquire(self) -> RunLock:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        while True:
            existed = self.path.exists()
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if not self._lock(fd, existed):
                    raise self._busy(_read_owner(self.path))
                # The holder may have removed the file between our open() and flock():
                # then we locked an orphan inode; start again on the new file.
                if os.fstat(fd).st_ino != os.stat(self.path).st_ino:
                    os.close(fd)
                    continue
            except FileNotFoundError:
                os.close(fd)
                continue
            except BaseException:
                os.close(fd)
                raise
            self.took_over_stale = existed and bool(_read_owner(self.path))
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(_owner()).encode())
            os.fsync(fd)
            self._fd = fd
            return self

    def _lock(self, fd: int, existed: bool) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        except OSError as exc:  # no flock on this file system: judge by the recorded pid
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            owner = _read_owner(self.path) if existed else {}
            mine = owner.get("host") == socket.gethostname()
            return not (owner and (not mine or _pid_alive(owner.get("pid"))))

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)  # while still holding it: nobody can lock the old inode in between
        except FileNotFoundError:
            pass
        finally:
            os.close(self._fd)  # closing releases the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
