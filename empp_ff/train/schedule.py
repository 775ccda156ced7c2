"""Learning-rate schedules: a linear warm-up (per optimiser step), then either a cosine
decay over the run (per step) or a reduction on a validation plateau (per epoch).

One object drives the optimiser's learning rate: ``step()`` after every optimiser
step, ``epoch_end(metric)`` after every validation. Its state (steps taken, the
plateau's scale, best metric and count of epochs without improvement) goes into the
checkpoint, so a resumed run continues the same schedule.
"""

from __future__ import annotations

import math
from typing import Any, Dict

import torch

from empp_ff.train.stopping import improves

SCHEDULERS = ("cosine", "plateau")


class LearningRateSchedule:
    def __init__(self, optimizer: torch.optim.Optimizer, kind: str = "cosine", *, warmup_steps: int = 0,
                 total_steps: int = 1, min_ratio: float = 1.0, plateau_factor: float = 0.5,
                 plateau_patience: int = 10, plateau_min_ratio: float = 1e-3, plateau_threshold: float = 0.0):
        if kind not in SCHEDULERS:
            raise ValueError(f"unknown learning-rate schedule {kind!r} (valid: {', '.join(SCHEDULERS)})")
        self.optimizer, self.kind = optimizer, kind
        self.warmup_steps = max(0, int(warmup_steps))
        self.total_steps = max(1, int(total_steps))
        self.min_ratio = min_ratio
        self.plateau_factor, self.plateau_patience, self.plateau_min_ratio = (
            plateau_factor, plateau_patience, plateau_min_ratio)
        self.plateau_threshold = plateau_threshold  # relative: a gain below it is no improvement
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.steps = 0
        self.scale = 1.0  # the plateau's reductions so far
        self.best = math.inf
        self.bad_epochs = 0
        self._apply()

    def factor(self) -> float:
        step = self.steps
        if self.warmup_steps and step < self.warmup_steps:
            warm = (step + 1) / self.warmup_steps
            return warm * (self.scale if self.kind == "plateau" else 1.0)
        if self.kind == "plateau":
            return self.scale
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def _apply(self) -> None:
        factor = self.factor()
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor

    def step(self) -> None:
        """After an optimiser step."""
        self.steps += 1
        self._apply()

    def epoch_end(self, metric: float) -> bool:
        """After a validation with selection ``metric`` (lower is better); True when the
        plateau schedule has just lowered the learning rate."""
        if self.kind != "plateau":
            return False
        if improves(metric, self.best, self.plateau_threshold):
            self.best, self.bad_epochs = metric, 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs < self.plateau_patience or self.scale <= self.plateau_min_ratio:
            return False
        self.scale = max(self.plateau_min_ratio, self.scale * self.plateau_factor)
        self.bad_epochs = 0
        self._apply()
        return True

    def state_dict(self) -> Dict[str, Any]:
        return {"kind": self.kind, "base_lrs": list(self.base_lrs), "steps": self.steps, "scale": self.scale,
                "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if "steps" not in state:  # a checkpoint of an older empp-ff: torch's LambdaLR (warm-up + cosine)
            self.base_lrs, self.steps = list(state["base_lrs"]), int(state["last_epoch"])
        else:
            if state.get("kind", self.kind) != self.kind:
                raise ValueError(f"the checkpoint's learning-rate schedule is {state['kind']!r}, not {self.kind!r}")
            self.base_lrs, self.steps = list(state["base_lrs"]), int(state["steps"])
            self.scale, self.best = float(state["scale"]), float(state["best"])
            self.bad_epochs = int(state["bad_epochs"])
        self._apply()
