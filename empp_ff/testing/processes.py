"""Commands in a fresh process, stopped by a signal while they work (the SIGTERM fault tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple


def temporaries(folder: Path) -> List[Path]:
    """The hidden temporaries (``.NAME....tmp``) in ``folder``."""
    return sorted(p for p in Path(folder).iterdir() if p.name.startswith(".") and p.name.endswith(".tmp"))


def cli_process(args: Sequence, cwd: Path, env: Optional[Dict[str, str]] = None) -> subprocess.Popen:
    """``empp-ff ARGS`` started in ``cwd`` (one thread, output captured as text)."""
    full_env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.Popen([sys.executable, "-m", "empp_ff.cli", *map(str, args)], cwd=cwd, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop_when(proc: subprocess.Popen, ready: Callable[[], bool], signum: int = signal.SIGTERM,
              timeout: float = 300.0) -> Tuple[int, str, str]:
    """Send ``signum`` to ``proc`` as soon as ``ready()`` holds; returns (exit status, stdout, stderr).
    Fails (AssertionError) when the process ends or ``timeout`` passes before it is ready."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(f"the process ended (status {proc.returncode}) before it was ready: {err[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"not ready after {timeout} s")
            time.sleep(0.05)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err


def catches(proc: subprocess.Popen, signum: int = signal.SIGTERM) -> bool:
    """Whether ``proc`` has installed a handler for ``signum`` (Linux: SigCgt in /proc/PID/status)."""
    try:
        status = Path(f"/proc/{proc.pid}/status").read_text()
    except OSError:
        return False
    caught = next((line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), "0")
    return bool(int(caught, 16) >> (signum - 1) & 1)
