"""The write protocol of a run directory: what is written when, so that a kill at
any instant resumes to exactly the result of an uninterrupted run.

Every file is replaced atomically (``empp_ff._atomic``); the protocol fixes the
order. Each epoch ends with:

1. ``checkpoints/best.pt`` (when the epoch improved the validation metric),
2. ``metrics.csv`` (the whole history),
3. ``checkpoints/last.pt``: the epoch's commit point.

A kill before 3 leaves the previous ``last.pt``; the epoch is then replayed
exactly (seeded data order and masks), rewriting 1 and 2 with the same content.
A kill after 3 resumes after this epoch. ``best.pt`` is written before ``last.pt``
so the epoch that ``last.pt`` records as best always has its ``best.pt``.

After the last epoch the final report writes the plots, evaluates ``best.pt`` on
the test split and commits ``test_metrics.json``, which records the number of
trained epochs: a re-run finds it matching ``last.pt`` and reports it again
without re-evaluating; a kill before it reruns the (deterministic) report.

On start, under the run-directory lock, the temporaries that a killed training
left behind are removed: only names it can prove are its own (``empp_ff._atomic``:
an empp-ff temporary of a process of this host that no longer runs) of a file the
run writes (:data:`RUN_FILES`, and anything in ``checkpoints/``, ``plots/``, ``data/``).
Other programs' files (a user's ``.notes.tmp``) and the temporary of a command still
running in the folder (an ``empp-ff md --out RUN_DIR/md.traj``) are never touched.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from empp_ff._atomic import stale_target
from empp_ff.train.rundir.lock import RunLock

__all__ = ["RunDirectory", "remove_leftover_temporaries", "RUN_FILES", "RUN_FOLDERS"]

# The files a training writes in its run directory, and the folders whose files are all its own.
RUN_FILES = frozenset({"config.yaml", "splits.json", "statistics.json", "finetune.json", "metrics.csv",
                       "test_metrics.json"})
RUN_FOLDERS = frozenset({"checkpoints", "plots", "data"})


def _run_writes(run_dir: Path, folder: Path, target: str) -> bool:
    relative = folder.relative_to(run_dir).parts
    return (not relative and target in RUN_FILES) or (len(relative) == 1 and relative[0] in RUN_FOLDERS)


def remove_leftover_temporaries(run_dir: Path) -> List[Path]:
    """Delete the temporaries a killed training left under ``run_dir`` (call with the lock held)."""
    run_dir = Path(run_dir)
    removed = []
    for folder in [run_dir] + [run_dir / name for name in sorted(RUN_FOLDERS)]:
        try:
            names = sorted(os.listdir(folder))
        except OSError:  # no such folder (yet)
            continue
        for name in names:
            target = stale_target(name)
            if target is not None and _run_writes(run_dir, folder, target):
                (folder / name).unlink(missing_ok=True)
                removed.append(folder / name)
    return removed


class RunDirectory:
    """One run directory's files and their write order; rank 0 alone writes."""

    def __init__(self, run_dir: Path, is_main: bool = True, log: Callable[[str], None] = print):
        self.root = Path(run_dir)
        self.is_main = is_main
        self.log = log
        self.lock = RunLock(self.root)
        self.checkpoints = self.root / "checkpoints"
        self.last = self.checkpoints / "last.pt"
        self.best = self.checkpoints / "best.pt"
        self.metrics = self.root / "metrics.csv"
        self.test_metrics = self.root / "test_metrics.json"
        self.plots = self.root / "plots"

    # -- start and end ------------------------------------------------------------------
    def open(self) -> RunDirectory:
        if not self.is_main:
            return self
        self.lock.acquire()
        if self.lock.took_over_stale:
            self.log(f"{self.root}: took over the lock of a training that no longer runs")
        removed = remove_leftover_temporaries(self.root)
        if removed:
            self.log(f"{self.root}: removed {len(removed)} temporary file(s) left by an interrupted write")
        return self

    def close(self) -> None:
        self.lock.release()

    # -- the epoch commit ---------------------------------------------------------------
    def commit_epoch(self, state: Dict[str, Any], improved: bool, history: Sequence[Dict[str, Any]],
                     columns: List[str]) -> None:
        from empp_ff.train.checkpoint import save_checkpoint
        from empp_ff.train.io import write_csv

        if not self.is_main:
            return
        if improved:
            save_checkpoint(state, self.best)
        write_csv(self.metrics, history, columns)
        save_checkpoint(state, self.last)  # the commit point: everything above is replayable

    # -- the final report -----------------------------------------------------------------
    def finished_result(self, trained_epochs: int) -> Optional[Dict[str, Any]]:
        """The committed ``test_metrics.json`` when it belongs to the run in ``last.pt``."""
        try:
            result = json.loads(self.test_metrics.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(result, dict) or result.get("trained_epochs") != trained_epochs:
            return None
        return result

    def commit_result(self, result: Dict[str, Any], trained_epochs: int) -> Dict[str, Any]:
        from empp_ff.train.io import write_json

        result = dict(result, trained_epochs=int(trained_epochs))
        if self.is_main:
            write_json(self.test_metrics, result)
        return result

    def discard_result(self) -> None:
        """Training goes on past a committed report (a larger max_epochs): it is no longer final."""
        if self.is_main:
            self.test_metrics.unlink(missing_ok=True)
