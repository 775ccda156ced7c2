"""torch.distributed plumbing for DDP training launched by ``torchrun``.

``torchrun --nproc_per_node K $(which empp-ff) train CONFIG`` sets WORLD_SIZE,
RANK and LOCAL_RANK; we then join the process group (NCCL on GPUs, gloo on
CPU). Without those variables everything here is a no-op, so one code path
serves single-process and distributed training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, Iterator, List

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_reduce_sum(self, values: List[float], device: torch.device) -> List[float]:
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def shutdown(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def init_distributed(device_name: str) -> tuple[DistContext, torch.device]:
    """Join the process group if launched by torchrun; pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(), _device(device_name, None)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    device = _device(device_name, local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(world, rank, local_rank), device


def select_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; a clear error for unusable CUDA."""
    return _device(name, None)


def _device(name: str, local_rank) -> torch.device:
    from empp_ff.train.config import ConfigError

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device={name!r} but CUDA is not available on this machine")
        if local_rank is not None and device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


class EpochShardSampler(torch.utils.data.Sampler):
    """This rank's share of one epoch's (optionally shuffled) order.

    The order is ``randperm(n)`` from a generator seeded by (seed, epoch) alone, so
    it replays exactly after a resume; rank r takes positions r, r+W, r+2W, ...
    With a per-rank batch of B/W, the W ranks' k-th batches together are exactly
    the k-th batch of B of a single-process run: DDP sees the same effective batches.
    Training pads the order to a multiple of W by repeating its start (as
    DistributedSampler does); evaluation does not pad, so nothing is counted twice.
    """

    def __init__(self, n: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True, pad: bool = True):
        self.n, self.seed, self.epoch = int(n), int(seed), int(epoch)
        self.rank, self.world_size = int(rank), int(world_size)
        self.shuffle, self.pad = shuffle, pad

    def _order(self) -> List[int]:
        if self.shuffle:
            from empp_ff.data.dataset import epoch_generator

            order = torch.randperm(self.n, generator=epoch_generator(self.seed, self.epoch)).tolist()
        else:
            order = list(range(self.n))
        if self.pad and self.world_size > 1 and self.n % self.world_size:
            extra = self.world_size - self.n % self.world_size
            order += (order * (extra // max(self.n, 1) + 1))[:extra]
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self._order())

    def __len__(self) -> int:
        return len(self._order())


def reduce_mean_dict(ctx: DistContext, sums: Dict[str, float], count: int, device) -> Dict[str, float]:
    """Average per-step values over all ranks' steps."""
    keys = sorted(sums)
    totals = ctx.all_reduce_sum([sums[k] for k in keys] + [float(count)], device)
    n = max(totals[-1], 1.0)
    return {k: v / n for k, v in zip(keys, totals[:-1])}


def reduce_means(ctx: DistContext, sums: Dict[str, float], counts: Dict[str, float], device) -> Dict[str, float]:
    """Per-key averages over all ranks' steps; keys no rank measured are left out.

    Every rank must pass the same keys (zero counts are fine)."""
    keys = sorted(sums)
    totals = ctx.all_reduce_sum([sums[k] for k in keys] + [float(counts[k]) for k in keys], device)
    n = len(keys)
    return {k: totals[i] / totals[n + i] for i, k in enumerate(keys) if totals[n + i] > 0}

