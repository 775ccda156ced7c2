"""Exponential moving average of model weights (with a warm-up on the decay,
as torch-ema / MACE do, so early averages are not dominated by the init)."""

from __future__ import annotations

import contextlib
from typing import Dict, Iterator

import torch


class EMA:
    def __init__(self, module: torch.nn.Module, decay: float):
        self.module = module
        self.decay = decay
        self.num_updates = 0
        self.shadow: Dict[str, torch.Tensor] = {
            name: p.detach().clone() for name, p in module.named_parameters()
        }

    @torch.no_grad()
    def update(self) -> None:
        self.num_updates += 1
        decay = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for name, p in self.module.named_parameters():
            self.shadow[name].lerp_(p.detach(), 1.0 - decay)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Temporarily swap the EMA weights into the module."""
        backup = {name: p.detach().clone() for name, p in self.module.named_parameters()}
        self._copy_in(self.shadow)
        try:
            yield
        finally:
            self._copy_in(backup)

    @torch.no_grad()
    def _copy_in(self, weights: Dict[str, torch.Tensor]) -> None:
        for name, p in self.module.named_parameters():
            p.copy_(weights[name])

    def averaged_state_dict(self) -> Dict[str, torch.Tensor]:
        """The module's full state dict with EMA parameters (buffers as they are)."""
        state = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
        for name, value in self.shadow.items():
            state[name] = value.detach().clone()
        return state

    def state_dict(self) -> Dict[str, object]:
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": self.shadow}

    def load_state_dict(self, state: Dict[str, object]) -> None:
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
        for name, value in state["shadow"].items():
            self.shadow[name].copy_(value)
