"""What makes a training run replayable bit for bit, so that a run killed anywhere
and resumed ends with the uninterrupted run's result (on CPU).

A run killed inside epoch e resumes from ``checkpoints/last.pt`` (the end of epoch
e - 1) and replays epoch e from its first batch. The replay draws what the first
attempt drew because everything random in an epoch comes from streams derived from
(seed, epoch) and the process's DDP rank alone, never from what the process did
before:

* the sampler's order (``EpochShardSampler``, the atom-budget batches) and the
  EMPP masks and batch-fraction draws (``Trainer.train_epoch``): generators of
  their own (``empp_ff.data.dataset.epoch_generator``);
* the global torch, numpy and Python generators, for whatever else draws from
  them (DataLoader worker seeds, library code): seeded at the start of every
  epoch by :func:`seed_global_generators`.

The same operations must also round the same way. TorchScript's profiling graph
executor (e3nn's scripted modules) swaps in re-optimised graphs, with gradient
formulas of their own, after the first calls of each module, so the same step
rounded differently in a fresh process than in one that had run for epochs (test
force errors apart in the 9th digit after a resume). :func:`replayable_run` runs
training with those re-optimisations off on CPU; interleaved timings of the demo
architecture's steps showed no difference beyond the few-per-cent noise. On CUDA
they stay on: there the scatter sums' atomic additions make even two uninterrupted
runs differ in the last digits, and the fuser matters for speed.
"""

from __future__ import annotations

import contextlib
import random
from typing import Iterator

import numpy as np
import torch

__all__ = ["replayable_run", "seed_global_generators"]


def seed_global_generators(seed: int, epoch: int, rank: int = 0) -> None:
    """Seed torch's (CPU and CUDA), numpy's and Python's global generators from (seed, epoch, rank)."""
    state = np.random.SeedSequence([int(seed) % 2**63, int(epoch), int(rank)]).generate_state(2, np.uint64)
    value = int(state[0]) % 2**63
    random.seed(value)
    np.random.seed(int(state[1]) % 2**32)
    torch.manual_seed(value)


@contextlib.contextmanager
def replayable_run(device: torch.device) -> Iterator[None]:
    """For the duration of a training on ``device``: TorchScript's executor without its
    re-optimisations (CPU only), and the caller's global generators kept aside and put back."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda), torch.jit.optimized_execution(device.type == "cuda"):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
