"""When training ends: at ``train.max_epochs`` (the cap) or, with ``train.patience``,
after that many epochs without a better validation metric (early stopping).

Everything here is a function of the epoch count and the best epoch, both in the
checkpoint, so a resumed run stops where an uninterrupted one would.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

from empp_ff.train.auxiliaries import SELF_SUPERVISED


def selection_metric(supervised: bool) -> str:
    """The validation metric that selects best.pt and that patience and the plateau schedule
    watch: the weighted MAEs, or in a self-supervised run its auxiliary's validation loss."""
    return "val_weighted_mae" if supervised else SELF_SUPERVISED.validation_columns()[0]


def improves(metric: float, best: float, min_improvement: float = 0.0) -> bool:
    """Whether ``metric`` betters ``best`` by more than the fraction ``min_improvement`` (a
    non-finite metric never does; anything finite betters an infinite best)."""
    if not math.isfinite(metric):
        return False
    return not math.isfinite(best) or metric < best * (1.0 - min_improvement)


class StopRule:
    """``patience`` counts epochs since the last improvement by more than the relative
    ``min_improvement`` (0: any improvement), as ReduceLROnPlateau's relative threshold:
    the crawl of ever smaller gains after each rate reduction does not keep a run going."""

    def __init__(self, max_epochs: int, patience: Optional[int], min_improvement: float = 0.0):
        self.max_epochs, self.patience, self.min_improvement = int(max_epochs), patience, float(min_improvement)

    def improves(self, metric: float, best: float) -> bool:
        """Whether ``metric`` betters ``best`` by more than ``min_improvement`` (relative)."""
        return improves(metric, best, self.min_improvement)

    def stopped_early(self, epoch: int, best_epoch: int) -> bool:
        return self.patience is not None and epoch > 0 and epoch - best_epoch >= self.patience

    def stopped(self, epoch: int, best_epoch: int) -> bool:
        return epoch >= self.max_epochs or self.stopped_early(epoch, best_epoch)

    def still_improving(self, epoch: int, best_epoch: int) -> bool:
        """Stopped by the cap with the best epoch within the last ``patience`` epochs (the
        last epoch, without patience): the validation error had not stopped falling."""
        return not self.stopped_early(epoch, best_epoch) and epoch - best_epoch < (self.patience or 1)

    def record(self, epoch: int, best_epoch: int, wall_time_s: float,
               improved_epoch: Optional[int] = None) -> Dict[str, Any]:
        """What ``test_metrics.json`` says of how the run ended (``best_epoch``: best.pt's;
        ``improved_epoch``: the last improvement by ``min_improvement``, which patience counts from)."""
        improved_epoch = best_epoch if improved_epoch is None else improved_epoch
        early = self.stopped_early(epoch, improved_epoch)
        return {"best_epoch": int(best_epoch), "epochs_run": int(epoch), "wall_time_s": round(float(wall_time_s), 3),
                "max_epochs": self.max_epochs, "patience": self.patience, "min_improvement": self.min_improvement,
                "last_improvement_epoch": int(improved_epoch),
                "stopped_by": "patience" if early else "max_epochs", "converged": early,
                "still_improving": self.still_improving(epoch, improved_epoch)}

    def summary(self, epoch: int, best_epoch: int, improved_epoch: Optional[int] = None) -> str:
        """The run's last line on how it ended (``best_epoch``: best.pt's; ``improved_epoch``:
        the last improvement by ``min_improvement``, which patience counts from)."""
        improved_epoch = best_epoch if improved_epoch is None else improved_epoch
        if self.stopped_early(epoch, improved_epoch):
            by = f" by more than {self.min_improvement:.2%}" if self.min_improvement else ""
            return (f"early stopping: no better validation metric{by} in {self.patience} epochs "
                    f"(last at epoch {improved_epoch}); best.pt from epoch {best_epoch} of {epoch}")
        if self.still_improving(epoch, improved_epoch):
            return (f"warning: train.max_epochs={self.max_epochs} reached while the validation metric was still "
                    f"improving (best epoch {best_epoch}): not converged; run the same command with a larger "
                    "--set train.max_epochs=... to continue")
        return f"train.max_epochs={self.max_epochs} reached; best epoch {best_epoch}"

    @staticmethod
    def best_epoch_of(history: List[Dict[str, Any]], supervised: bool) -> int:
        """The best epoch of a metric history (checkpoints of older empp-ff do not record it)."""
        key = selection_metric(supervised)
        best, best_epoch = math.inf, 0
        for row in history:
            value = float(row.get(key, math.nan))
            if math.isfinite(value) and (value < best or best_epoch == 0):
                best, best_epoch = value, int(row["epoch"])
        return best_epoch
