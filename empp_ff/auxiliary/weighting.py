"""How an auxiliary loss (EMPP, denoising) enters the training objective over time.

Shared by :class:`~empp_ff.empp.config.EMPPConfig` and
:class:`~empp_ff.denoise.config.DenoiseConfig`, so both auxiliaries can be run
with the same recipe and compared at equal settings.

* ``weight`` λ and its ``schedule``: ``constant``, or ``linear`` / ``cosine``
  decay from λ at ``decay_start`` to 0 at ``decay_end`` (fractions of the total
  optimiser steps); after ``decay_end`` the auxiliary is off and costs nothing.
* ``grad_balance`` α (optional): the auxiliary's gradient on the shared backbone
  parameters is rescaled every step to α × (schedule factor) × the norm of the
  supervised gradient, instead of being multiplied by λ. Its own head and
  encoders still get λ × their gradient.
* ``batch_fraction``: the auxiliary runs on this fraction of the training
  batches (drawn from the replayable per-epoch generator).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

SCHEDULES = ("constant", "linear", "cosine")


@dataclass
class AuxWeighting:
    weight: float = 1.0
    schedule: str = "constant"
    decay_start: float = 0.0
    decay_end: float = 1.0
    grad_balance: Optional[float] = None
    batch_fraction: float = 1.0

    def factor(self, progress: float) -> float:
        """Schedule factor in [0, 1] at ``progress`` = step / total steps."""
        if self.schedule == "constant" or progress <= self.decay_start:
            return 1.0
        if progress >= self.decay_end:
            return 0.0
        x = (progress - self.decay_start) / (self.decay_end - self.decay_start)
        return 1.0 - x if self.schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * x))

    def validate_weighting(self, prefix: str) -> None:
        def bad(msg: str):
            raise ValueError(f"{prefix}.{msg}")

        if self.weight < 0:
            bad(f"weight must be >= 0, got {self.weight}")
        if self.schedule not in SCHEDULES:
            bad(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not 0.0 <= self.decay_start < self.decay_end <= 1.0:
            bad(f"decay_start/decay_end must satisfy 0 <= start < end <= 1, got {self.decay_start}, {self.decay_end}")
        if self.grad_balance is not None and not self.grad_balance > 0:
            bad(f"grad_balance must be > 0 or null, got {self.grad_balance}")
        if not 0.0 < self.batch_fraction <= 1.0:
            bad(f"batch_fraction must lie in (0, 1], got {self.batch_fraction}")
