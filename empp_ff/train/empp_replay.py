"""EMPP replay during fine-tuning (``empp.replay_data``): unlabelled structures of another
data set are rehearsed with the EMPP loss in every optimiser step, beside the supervised
batch, as ``mace_run_train``'s multihead replay rehearses a foundation model's data so
that fine-tuning does not forget it.

The replay file (any supported format; labels ignored) is converted once into
``RUN_DIR/data/replay_<name>.h5``. Only structures whose elements the run's own data
hold are rehearsed (a force field of C, H, O has no use for the sulfur of a drug, and
an element its training data lack would be one the exported model claims to know).
Each epoch's replay batches are drawn from a generator seeded by (seed, epoch, rank),
so a resumed run rehearses the same structures in the same steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from empp_ff.train.config import Config, ConfigError

#: The replay term of the training objective, and its per-step value (a metrics.csv column).
REPLAY_TERM = "replay"
REPLAY_LOSS = "replay_empp_loss"


def replay_indices(store, species: Sequence[int]) -> np.ndarray:
    """Indices of the structures of ``store`` made only of ``species``."""
    allowed = np.zeros(256, dtype=bool)
    allowed[list(species)] = True
    ok = [i for i in range(len(store)) if allowed[np.asarray(store[i].atomic_numbers, dtype=np.int64)].all()]
    return np.asarray(ok, dtype=np.int64)


def open_replay_store(cfg: Config, run_dir: Path, species: Sequence[int], log: Callable[[str], None],
                      write: bool = True):
    """(store, indices) of the replay structures (rank 0 converts, the others read)."""
    from empp_ff.data.conversion import convert
    from empp_ff.data.readers import detect_format
    from empp_ff.data.store import StructureStore

    source = Path(cfg.empp.replay_data).expanduser()  # its existence is a config check
    fmt = detect_format(source)
    target = source if fmt == "store" else run_dir / "data" / f"replay_{source.stem}.h5"
    if write and fmt != "store" and not target.exists():
        log(f"converting the replay data {source} ({fmt}) -> {target}")
        convert(source, target, fmt=fmt, drop_nonfinite=True, allow_missing_labels=True)
    store = StructureStore(target)
    indices = replay_indices(store, species)
    if len(indices) == 0:
        raise ConfigError(f"empp.replay_data: none of the {len(store)} structures of {source} is made of the "
                          f"elements of the training data (atomic numbers {list(species)}) only")
    if write:
        log(f"EMPP replay: {len(indices)} of {len(store)} structures of {source} "
            f"(those made of atomic numbers {list(species)}), weight {cfg.empp.replay_weight}")
    return store, indices


class ReplayStream:
    """Endless batches of replay graphs; ``epoch(e)`` restarts the stream of epoch ``e``."""

    def __init__(self, store, indices: np.ndarray, r_max: float, dtype: torch.dtype, batch_size: int,
                 seed: int, rank: int):
        from empp_ff.data.dataset import GraphDataset

        self.dataset = GraphDataset(store, indices, r_max, dtype=dtype, use_forces=False)
        self.batch_size, self.seed, self.rank = int(batch_size), int(seed), int(rank)

    def epoch(self, epoch: int) -> Iterator:
        from torch_geometric.data import Batch

        from empp_ff.data.dataset import epoch_generator

        generator = epoch_generator(self.seed + 15485863 + 7727 * self.rank, epoch)
        n = len(self.dataset)
        while True:
            order = torch.randperm(n, generator=generator).tolist()
            for start in range(0, max(n - self.batch_size, 0) + 1, self.batch_size):  # full batches
                items = order[start:start + self.batch_size]
                yield Batch.from_data_list([self.dataset[i] for i in items])


def replay_stream(cfg: Config, dist, run_dir: Path, species: Sequence[int], r_max: float, dtype: torch.dtype,
                  rank_batch_size: int, log: Callable[[str], None]) -> ReplayStream:
    """The run's replay stream (rank 0 converts the replay file first)."""
    if dist.is_main:
        store, indices = open_replay_store(cfg, run_dir, species, log)
    dist.barrier()
    if not dist.is_main:
        store, indices = open_replay_store(cfg, run_dir, species, log, write=False)
    size = cfg.empp.replay_batch_size or rank_batch_size
    return ReplayStream(store, indices, r_max, dtype, size, cfg.seed, dist.rank)
