"""Direction distribution on the S² grid (spec §4.3).

logits(s) = W2·SiLU(W1·F(s) + b1) + b2 with F(s) = Σ_lm A_{c,lm} Y_lm(s). W1
commutes with the grid evaluation, so it is applied in coefficient space
([P, C, K] → [P, H, K]) and the grid evaluation is one matmul with the
precomputed grid matrix Y [K, S]. log p = log_softmax(logits / tau) over S.
"""

from __future__ import annotations

import torch

from empp_ff.empp.sphere import sphere_grid_matrix


class DirectionHead(torch.nn.Module):
    def __init__(self, lmax: int, grid_res, channels: int, hidden: int, tau: float, dtype=torch.float32):
        super().__init__()
        self.register_buffer("grid_matrix", sphere_grid_matrix(lmax, grid_res, dtype=dtype), persistent=False)
        self.linear1 = torch.nn.Linear(channels, hidden, dtype=dtype)
        self.linear2 = torch.nn.Linear(hidden, 1, dtype=dtype)
        self.tau = float(tau)

    def logits(self, coefficients: torch.Tensor) -> torch.Tensor:
        """``A [P, C, K]`` → ``[P, S]`` logits (before the temperature)."""
        a = torch.einsum("pck,hc->phk", coefficients, self.linear1.weight)  # [P, H, K]
        g = torch.matmul(a, self.grid_matrix)  # [P, H, S]
        g = torch.nn.functional.silu(g + self.linear1.bias[:, None])
        return torch.einsum("phs,h->ps", g, self.linear2.weight[0]) + self.linear2.bias  # squeeze only the last dim

    def forward(self, coefficients: torch.Tensor) -> torch.Tensor:
        logits = self.logits(coefficients)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        return torch.log_softmax(logits / self.tau, dim=-1)
