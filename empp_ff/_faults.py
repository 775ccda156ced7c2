"""Fault injection for the kill-at-any-point tests of the run-directory protocol.

Every atomic write passes two *windows*: ``tmp:<file>`` (the temporary file is
complete, the target not yet replaced) and ``done:<file>`` (replaced, the next
write not yet begun). Two environment variables, read at each window and unset
in normal use (then a window costs one dictionary lookup):

* ``EMPP_FF_FAULT_LOG=PATH``: append each window's name to PATH, one a line.
* ``EMPP_FF_KILL_AT=K``: the process kills itself with SIGKILL at its K-th window
  (0-based, counted from the start of the process), as ``kill -9`` would.
* ``EMPP_FF_SIGNAL_AT=K:SIGTERM`` (or ``K:SIGINT``): the process sends itself that
  signal at its K-th window, as a batch scheduler's time limit would (``empp_ff._signals``).

Inside an epoch, where nothing is written, ``EMPP_FF_KILL_AT_STEP=N`` kills the
training process as it begins optimiser step N (0-based, counted over the run:
``step`` in the checkpoint), for the kill-inside-an-epoch resume test.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Union

_count = 0


def window(kind: str, path: Union[str, os.PathLike]) -> None:
    global _count
    log, kill_at = os.environ.get("EMPP_FF_FAULT_LOG"), os.environ.get("EMPP_FF_KILL_AT")
    signal_at = os.environ.get("EMPP_FF_SIGNAL_AT")
    if log is None and kill_at is None and signal_at is None:
        return
    name = f"{kind}:{Path(path).name}"
    if log:
        with open(log, "a") as fh:
            fh.write(name + "\n")
    if kill_at is not None and int(kill_at) == _count:
        os.kill(os.getpid(), signal.SIGKILL)
    if signal_at is not None and int(signal_at.split(":")[0]) == _count:
        os.kill(os.getpid(), signal.Signals[signal_at.split(":")[1]])
    _count += 1


def step_window(step: int) -> None:
    """Called before optimiser step ``step``: SIGKILL when it is ``EMPP_FF_KILL_AT_STEP``."""
    kill_at = os.environ.get("EMPP_FF_KILL_AT_STEP")
    if kill_at is not None and int(kill_at) == step:
        os.kill(os.getpid(), signal.SIGKILL)
