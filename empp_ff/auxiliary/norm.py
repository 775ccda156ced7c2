"""Per-irrep RMS layer norm (spec §4.2; e3nn 0.4.4 has no equivariant LayerNorm).

For every irrep type (mul x l) of the input: scalars (l = 0) are centred over
their channels; every channel is divided by sqrt(mean over the channels of that
type of the per-channel mean-square component + eps); then a learnable
per-channel weight multiplies it and scalars get a learnable bias. Only norms
(rotation invariant) and per-channel scalings are used, so it is equivariant.
"""

from __future__ import annotations

import torch


class IrrepsRMSNorm(torch.nn.Module):
    def __init__(self, irreps, eps: float = 1e-5):
        super().__init__()
        self.eps = float(eps)
        self.blocks = []  # (start, mul, dim, is_scalar, weight offset, bias offset or -1)
        start = w_off = b_off = 0
        for mul, ir in irreps:
            d = ir.dim
            scalar = ir.l == 0
            self.blocks.append((start, mul, d, scalar, w_off, b_off if scalar else -1))
            start += mul * d
            w_off += mul
            if scalar:
                b_off += mul
        self.dim = start
        self.weight = torch.nn.Parameter(torch.ones(w_off))
        self.bias = torch.nn.Parameter(torch.zeros(b_off))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.dim:
            raise ValueError(f"IrrepsRMSNorm expects {self.dim} features, got {x.shape[-1]}")
        lead = x.shape[:-1]
        out = []
        for start, mul, d, scalar, w_off, b_off in self.blocks:
            block = x[..., start : start + mul * d].reshape(*lead, mul, d)
            if scalar:
                block = block - block.mean(dim=-2, keepdim=True)
            ms = block.pow(2).mean(dim=-1).mean(dim=-1, keepdim=True)  # [..., 1]
            block = block / torch.sqrt(ms + self.eps)[..., None]
            block = block * self.weight[w_off : w_off + mul][:, None]
            if scalar:
                block = block + self.bias[b_off : b_off + mul][:, None]
            out.append(block.reshape(*lead, mul * d))
        return torch.cat(out, dim=-1)
