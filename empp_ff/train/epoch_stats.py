"""Per-step values of one training epoch (losses, gradient diagnostics) and their means.

Every rank must reduce the same keys, also when an auxiliary loss skipped all of a
rank's batches, so the keys are fixed up front from what the run logs.
"""

from __future__ import annotations

from typing import Dict, List

from empp_ff.train.distributed import reduce_means
from empp_ff.train.empp_replay import REPLAY_LOSS
from empp_ff.train.objective import SUPERVISED_PARTS, grad_cos_key, grad_norm_key

#: The supervised objective's per-step values, logged as ``train_<key>``; every other value
#: (auxiliary outputs, replay, gradient diagnostics) keeps its own name.
SUPERVISED_KEYS = ("loss", "energy_loss", "forces_loss")


def logged_keys(model, supervised: bool, grad_norms: bool, replay: bool = False) -> List[str]:
    """The per-step values a run with ``model`` (a TrainingModel) logs."""
    keys = list(SUPERVISED_KEYS) if supervised else ["loss"]
    names = [aux.name for aux in model.auxiliaries]
    for aux in model.auxiliaries:
        keys += list(aux.outputs)
    if replay:
        keys += [REPLAY_LOSS]
    if grad_norms:
        keys += [grad_norm_key(n) for n in (list(SUPERVISED_PARTS) if supervised else []) + names]
        keys += [grad_cos_key(n) for n in names] if supervised else []
    return keys


class EpochStats:
    def __init__(self, keys: List[str]):
        self.sums = dict.fromkeys(keys, 0.0)
        self.counts = dict.fromkeys(keys, 0)

    def add(self, values: Dict[str, float]) -> None:
        for key, value in values.items():
            self.sums[key] += float(value)
            self.counts[key] += 1

    def means(self, dist, device) -> Dict[str, float]:
        """Means over every rank's steps, named as in metrics.csv (``train_`` for the supervised parts)."""
        means = reduce_means(dist, self.sums, self.counts, device)
        return {("train_" + k if k in SUPERVISED_KEYS else k): v for k, v in means.items()}
