"""Per-epoch scalars for TensorBoard (``RUN_DIR/tensorboard``), written by rank 0."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Dict


class TensorBoardLog:
    """A no-op unless enabled on the main rank and tensorboard is importable.

    ``first_step``: the first epoch this run writes; older events after it (from
    an interrupted run's last, unfinished epoch) are purged on resume.
    """

    def __init__(self, run_dir: Path, enabled: bool, first_step: int, log: Callable[[str], None]):
        self._writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is a dependency, but do not fail a run over logging
            log("tensorboard is not installed: no TensorBoard logs")
            return
        self._writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=first_step)

    def write(self, row: Dict[str, Any], step: int) -> None:
        if self._writer is None:
            return
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                self._writer.add_scalar(key, value, step)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
