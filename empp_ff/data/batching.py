"""Batches by a size budget (total atoms, or edges) instead of a fixed count.

GEOM-like data mix 10- and 100-atom molecules: a fixed ``batch_size`` either
wastes most of an accelerator on small molecules or runs out of memory on large
ones. :class:`BudgetBatchSampler` packs dataset indices into batches whose summed
size (``sizes[i]``: atoms per structure, or an edge estimate) stays within
``max_size``, and plugs into the PyG ``DataLoader`` as ``batch_sampler=``.

Rules:

* Order: with ``shuffle`` the visiting order is ``torch.randperm(n)`` drawn from
  :func:`empp_ff.data.dataset.epoch_generator` (seed, epoch) -- the same order
  ``make_loader(shuffle=True)`` uses -- then packed greedily in that order
  (a batch closes when the next item would exceed the budget). Same (seed,
  epoch, sizes) -> same batches on every rank and after a resume.
* Oversize items: a structure larger than the budget is never dropped. It goes
  alone into its own batch and a ``UserWarning`` is issued once per sampler
  (``oversize="error"`` raises ``ValueError`` instead, naming the first such
  index and size).
* Every index appears exactly once per epoch (``num_replicas=1``).
* Distributed (``num_replicas > 1``): all ranks build the same list of batches;
  rank ``r`` takes batches ``r, r + R, r + 2R, ...``, so the ranks' batches are
  disjoint. The batch list is padded by repeating batches from its start until
  its length divides by ``R`` (as ``DistributedSampler`` pads indices), so every
  rank runs the same number of steps; ``drop_last=True`` drops the trailing
  batches instead. With ``num_replicas=1`` ``drop_last`` drops nothing (there is
  no well-defined "incomplete" budget batch).
* ``max_graphs`` optionally caps the number of structures per batch as well.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = ["BudgetBatchSampler", "pack_batches", "make_budget_loader"]


def pack_batches(
    order: np.ndarray, sizes: np.ndarray, max_size: int, max_graphs: int | None = None
) -> tuple[list[np.ndarray], np.ndarray]:
    """Greedy packing of ``order`` (indices into ``sizes``) into consecutive runs
    with summed size <= ``max_size`` (and at most ``max_graphs`` items).

    Returns (batches, oversize): a list of int64 index arrays, and the indices
    whose own size exceeds the budget (each alone in its batch). Runs in
    O(n_batches * log n) with ``searchsorted`` on the cumulative sizes.
    """
    order = np.asarray(order, dtype=np.int64)
    s = np.asarray(sizes)[order]
    if s.size and s.min() < 0:
        raise ValueError("sizes must be >= 0")
    cum = np.zeros(s.shape[0] + 1, dtype=np.int64)  # cum[k] = sum of the first k items
    np.cumsum(s, dtype=np.int64, out=cum[1:])
    n = order.shape[0]
    batches: list[np.ndarray] = []
    start = 0
    while start < n:
        end = int(np.searchsorted(cum, cum[start] + max_size, side="right")) - 1
        if max_graphs is not None:
            end = min(end, start + max_graphs)
        end = max(end, start + 1)  # an oversize item goes alone
        batches.append(order[start:end])
        start = end
    oversize = order[s > max_size]
    return batches, oversize


class BudgetBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices whose summed ``sizes`` stay <= ``max_size``.

    Args:
        sizes: per-item cost, int [n] -- ``StructureStore.n_atoms[dataset.indices]``
            for an atom budget, or per-structure edge counts for an edge budget.
        max_size: the budget per batch (atoms or edges).
        shuffle: visit items in a (seed, epoch)-seeded random order; else in index order.
        seed, epoch: determine the order; call :meth:`set_epoch` each epoch.
        drop_last: distributed only: drop trailing batches instead of padding.
        num_replicas, rank: distributed split of the batch list (default: 1, 0).
        max_graphs: optional cap on structures per batch.
        oversize: ``"single"`` (default; alone in its batch, warn once) or ``"error"``.

    The packing is computed lazily once per epoch and cached, so ``len()``
    (needed by the DataLoader/progress bars) and iteration agree.
    """

    def __init__(
        self,
        sizes: Sequence[int] | np.ndarray,
        max_size: int,
        shuffle: bool = True,
        seed: int = 0,
        epoch: int = 0,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
        max_graphs: int | None = None,
        oversize: str = "single",
    ) -> None:
        # int32: ~150 MB for GEOM-Drug's 37 M structures instead of 300 MB (sums are int64).
        self.sizes = np.asarray(sizes).reshape(-1)
        if self.sizes.size and self.sizes.max() >= 2**31:
            raise ValueError(f"sizes must be < 2**31, got {self.sizes.max()}")
        self.sizes = self.sizes.astype(np.int32)
        if int(max_size) < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(
                f"need num_replicas >= 1 and 0 <= rank < num_replicas, got rank={rank}, num_replicas={num_replicas}"
            )
        if max_graphs is not None and max_graphs < 1:
            raise ValueError(f"max_graphs must be >= 1 or None, got {max_graphs}")
        if oversize not in ("single", "error"):
            raise ValueError(f"oversize must be 'single' or 'error', got {oversize!r}")
        if self.sizes.size and self.sizes.min() < 0:
            raise ValueError("sizes must be >= 0")
        self.max_size = int(max_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.epoch = int(epoch)
        self.drop_last = bool(drop_last)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.max_graphs = None if max_graphs is None else int(max_graphs)
        self.oversize = oversize
        self._warned = False
        self._cache: tuple[int, list[np.ndarray]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Change the epoch (the shuffle order), as ``DistributedSampler.set_epoch``."""
        self.epoch = int(epoch)

    def _order(self) -> np.ndarray:
        n = self.sizes.shape[0]
        if not self.shuffle:
            return np.arange(n, dtype=np.int64)
        from empp_ff.data.dataset import epoch_generator

        return torch.randperm(n, generator=epoch_generator(self.seed, self.epoch)).numpy().astype(np.int64)

    def all_batches(self) -> list[np.ndarray]:
        """This epoch's batches for all ranks, before padding/splitting (cached)."""
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        batches, over = pack_batches(self._order(), self.sizes, self.max_size, self.max_graphs)
        if over.size:
            i = int(over[0])
            msg = (
                f"{over.size} structure(s) exceed the batch budget max_size={self.max_size} "
                f"(first: index {i} with size {int(self.sizes[i])})"
            )
            if self.oversize == "error":
                raise ValueError(msg + "; raise max_size or remove them from the split.")
            if not self._warned:
                warnings.warn(msg + "; each goes alone into its own batch.", UserWarning, stacklevel=3)
                self._warned = True
        self._cache = (self.epoch, batches)
        return batches

    def _rank_batches(self) -> list[np.ndarray]:
        batches = self.all_batches()
        r = self.num_replicas
        if r == 1:
            return batches
        nb = len(batches)
        if self.drop_last:
            total = (nb // r) * r
            batches = batches[:total]
        else:
            total = math.ceil(nb / r) * r
            pad = total - nb
            if pad and nb:
                reps = math.ceil(pad / nb)
                batches = batches + (batches * reps)[:pad]
        return batches[self.rank : total : r]

    def __iter__(self) -> Iterator[list[int]]:
        for b in self._rank_batches():
            yield b.tolist()

    def __len__(self) -> int:
        nb = len(self.all_batches())
        r = self.num_replicas
        if r == 1:
            return nb
        return nb // r if self.drop_last else math.ceil(nb / r)


def make_budget_loader(
    dataset,
    max_atoms: int,
    shuffle: bool,
    seed: int = 0,
    epoch: int = 0,
    num_workers: int = 0,
    num_replicas: int = 1,
    rank: int = 0,
    max_graphs: int | None = None,
    drop_last: bool = False,
    oversize: str = "single",
):
    """PyG DataLoader over a :class:`~empp_ff.data.dataset.GraphDataset` with atom-budget batches.

    Atom counts come from the store's offsets (no structure is read). Build one
    loader per epoch (as :func:`~empp_ff.data.dataset.make_loader`), or keep it
    and call ``loader.batch_sampler.set_epoch(e)``.
    """
    from torch_geometric.loader import DataLoader

    sizes = dataset.store.n_atoms[dataset.indices]
    sampler = BudgetBatchSampler(
        sizes, max_atoms, shuffle=shuffle, seed=seed, epoch=epoch, drop_last=drop_last,
        num_replicas=num_replicas, rank=rank, max_graphs=max_graphs, oversize=oversize,
    )
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, persistent_workers=False)
