"""Per-step values of one training epoch (losses, gradient diagnostics) and their means.

Every rank must reduce the same keys, also when an auxiliary loss skipped all of a
rank's batches, so the keys are fixed up front from what the run logs.
"""

from __future__ import annotations

from typing import Dict, List

from empp_ff.train.distributed import reduce_means


def logged_keys(model, supervised: bool, grad_norms: bool, replay: bool = False) -> List[str]:
    """The per-step values a run with ``model`` (a TrainingModel) logs."""
    keys = ["loss"] + (["energy_loss", "forces_loss"] if supervised else [])
    aux = [name for name in ("empp", "denoise") if getattr(model, name) is not None]
    if model.empp is not None:
        keys += ["empp_loss", "empp_radius_kl", "empp_direction_kl"]
    if model.denoise is not None:
        keys += ["denoise_loss"]
    if replay:
        keys += ["replay_empp_loss"]
    if grad_norms:
        keys += [f"grad_norm_{n}" for n in (["energy", "forces"] if supervised else []) + aux]
        keys += [f"grad_cos_forces_{n}" for n in aux] if supervised else []
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
        own = ("empp", "denoise", "grad_", "replay")
        return {(k if k.startswith(own) else "train_" + k): v for k, v in means.items()}
