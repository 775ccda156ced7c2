"""Direction distribution on the S² grid (spec §4.3).

logits(s) = W2·SiLU(W1·F(s) + b1) + b2 with F(s) = Σ_lm A_{c,lm} Y_lm(s). W1
commutes with the grid evaluation, so it is applied in coefficient space
([P, C, K] → [P, H, K]) and the grid evaluation is one matmul with the
precomputed grid matrix Y [K, S] (b1 rides along as an extra coefficient with a
constant grid row). log p = log_softmax(logits / tau) over S.

The [P, H, S] hidden tensor is the cost of the whole EMPP head (H = 16,
S = 10 100). ``_GridMLP`` evaluates it in chunks of pairs small enough to stay
in cache and recomputes it in the backward pass instead of storing it, which
is several times faster on CPU than the plain autograd graph and needs no
[P, H, S] memory; ``logits_reference`` is the plain version (tests).
"""

from __future__ import annotations

import torch

from empp_ff.empp.sphere import sphere_grid_matrix

_CHUNK_ELEMENTS = 1 << 18  # hidden values per chunk (1 MiB in float32: stays in cache)


class _GridMLP(torch.autograd.Function):
    """logits[p, s] = Σ_h w[h] · SiLU( Σ_k a[p, h, k] Y[k, s] ) for a [P, H, K], Y [K, S]."""

    @staticmethod
    def forward(ctx, a, grid, w):
        P, H, _ = a.shape
        S = grid.shape[1]
        chunk = max(1, _CHUNK_ELEMENTS // (H * S))
        out = a.new_empty(P, S)
        for i in range(0, P, chunk):
            g = torch.matmul(a[i : i + chunk], grid)  # [p, H, S]
            out[i : i + chunk] = torch.matmul(w, torch.nn.functional.silu(g))  # [p, S]
        ctx.save_for_backward(a, grid, w)
        ctx.chunk = chunk
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        a, grid, w = ctx.saved_tensors
        chunk = ctx.chunk
        P = a.shape[0]
        need_a, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[2]
        grad_a = torch.empty_like(a) if need_a else None
        grad_w = torch.zeros_like(w) if need_w else None
        for i in range(0, P, chunk):
            go = grad_out[i : i + chunk].unsqueeze(-1)  # [p, S, 1]
            g = torch.matmul(a[i : i + chunk], grid)  # recomputed pre-activation [p, H, S]
            sig = torch.sigmoid(g)
            s = g * sig  # silu(g)
            if need_w:
                grad_w += torch.matmul(s, go).sum(0)[:, 0]
            if need_a:
                # silu'(g) = sig·(1 + g − silu(g)); the factors go[s]·w[h] are folded into
                # the final contraction (go·Y is only [p, K, S])
                g -= s
                g += 1.0
                sig *= g
                gy = grid.unsqueeze(0) * go.transpose(1, 2)  # [p, K, S]
                grad_a[i : i + chunk] = torch.matmul(sig, gy.transpose(1, 2)) * w[:, None]
        return grad_a, None, grad_w


class DirectionHead(torch.nn.Module):
    def __init__(self, lmax: int, grid_res, channels: int, hidden: int, tau: float, dtype=torch.float32):
        super().__init__()
        grid = sphere_grid_matrix(lmax, grid_res, dtype=dtype)
        self.register_buffer("grid_matrix", grid, persistent=False)
        ones = torch.ones(1, grid.shape[1], dtype=dtype)
        self.register_buffer("grid_matrix_bias", torch.cat([grid, ones]), persistent=False)
        self.linear1 = torch.nn.Linear(channels, hidden, dtype=dtype)
        self.linear2 = torch.nn.Linear(hidden, 1, dtype=dtype)
        self.tau = float(tau)

    def _hidden_coefficients(self, coefficients: torch.Tensor) -> torch.Tensor:
        a = torch.einsum("pck,hc->phk", coefficients, self.linear1.weight)  # [P, H, K]
        bias = self.linear1.bias[None, :, None].expand(a.shape[0], -1, 1)
        return torch.cat([a, bias], dim=-1)  # [P, H, K + 1]: b1 on the constant grid row

    def logits(self, coefficients: torch.Tensor) -> torch.Tensor:
        """``A [P, C, K]`` → ``[P, S]`` logits (before the temperature)."""
        a = self._hidden_coefficients(coefficients)
        return _GridMLP.apply(a, self.grid_matrix_bias, self.linear2.weight[0]) + self.linear2.bias

    def logits_reference(self, coefficients: torch.Tensor) -> torch.Tensor:
        a = torch.einsum("pck,hc->phk", coefficients, self.linear1.weight)
        g = torch.nn.functional.silu(torch.matmul(a, self.grid_matrix) + self.linear1.bias[:, None])
        return torch.einsum("phs,h->ps", g, self.linear2.weight[0]) + self.linear2.bias  # squeeze only the last dim

    def forward(self, coefficients: torch.Tensor) -> torch.Tensor:
        logits = self.logits(coefficients)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        return torch.log_softmax(logits / self.tau, dim=-1)
