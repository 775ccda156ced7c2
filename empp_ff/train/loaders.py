"""This rank's graph datasets and data loaders, for training and validation.

Training batches are 1/W of the global batch (W ranks) and padded to equal
length over ranks, so DDP sees the same effective batches as one process;
evaluation shards are not padded (nothing is counted twice). With
``train.max_atoms_per_batch`` training batches follow an atom budget instead.
Every order depends only on (seed, epoch), so a resumed run replays it.
"""

from __future__ import annotations

import torch

from empp_ff.train.config import Config
from empp_ff.train.data_setup import PreparedData
from empp_ff.train.distributed import DistContext, EpochShardSampler

# Structures of the training split used to refit the reference energies each epoch.
REFIT_SAMPLE = 2000


class Loaders:
    def __init__(self, cfg: Config, dist: DistContext, device: torch.device, data: PreparedData,
                 r_max: float, dtype: torch.dtype, use_forces: bool):
        self.cfg, self.dist, self.device, self.data = cfg, dist, device, data
        self.r_max, self.dtype, self.use_forces = float(r_max), dtype, use_forces
        self.rank_batch_size = cfg.train.batch_size // dist.world_size
        self._refit = None

    def dataset(self, split: str):
        """The graphs of one split (``train``, ``val`` or ``test``) of the prepared store."""
        from empp_ff.data.dataset import GraphDataset

        return GraphDataset(self.data.store, self.data.splits[split], self.r_max, dtype=self.dtype,
                            use_forces=self.use_forces)

    def loader(self, dataset, train: bool, epoch: int = 0):
        """This rank's loader: shuffled, padded rank batches for training (epoch
        ``epoch``); an unpadded shard of evaluation batches otherwise."""
        from torch_geometric.loader import DataLoader

        cfg, d = self.cfg, self.dist
        if train and cfg.train.max_atoms_per_batch:
            from empp_ff.data.batching import make_budget_loader

            return make_budget_loader(dataset, cfg.train.max_atoms_per_batch, shuffle=True, seed=cfg.seed,
                                      epoch=epoch, num_workers=cfg.data.num_workers,
                                      num_replicas=d.world_size, rank=d.rank)
        sampler = EpochShardSampler(len(dataset), cfg.seed, epoch, d.rank, d.world_size, shuffle=train, pad=train)
        batch_size = self.rank_batch_size if train else cfg.train.eval_batch_size
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=cfg.data.num_workers,
                          pin_memory=self.device.type == "cuda", persistent_workers=False)

    def refit_loader(self):
        """A fixed, seeded sample of the training split (energies only), the same on every
        rank so every rank refits the same reference energies (train/energy_offset.py)."""
        import numpy as np
        from torch_geometric.loader import DataLoader

        from empp_ff.data.dataset import GraphDataset

        if self._refit is not None:
            return self._refit
        train = np.asarray(self.data.splits["train"])
        if len(train) > REFIT_SAMPLE:
            train = np.sort(np.random.default_rng(self.cfg.seed).choice(train, REFIT_SAMPLE, replace=False))
        dataset = GraphDataset(self.data.store, train, self.r_max, dtype=self.dtype, use_forces=False)
        self._refit = DataLoader(dataset, batch_size=self.cfg.train.eval_batch_size, shuffle=False)
        return self._refit
