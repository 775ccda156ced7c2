"""Distance distribution over radius bins (spec §4.4): MLP on the head's l = 0
coefficients A[:, :, 0] (C → hidden → bins, SiLU), log_softmax(logits / tau)."""

from __future__ import annotations

import torch


class RadiusHead(torch.nn.Module):
    def __init__(self, channels: int, hidden: int, bins: int, tau: float = 1.0, dtype=torch.float32):
        super().__init__()
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(channels, hidden, dtype=dtype),
            torch.nn.SiLU(),
            torch.nn.Linear(hidden, bins, dtype=dtype),
        )
        self.tau = float(tau)

    def forward(self, scalars: torch.Tensor) -> torch.Tensor:
        logits = self.mlp(scalars)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        return torch.log_softmax(logits / self.tau, dim=-1)
