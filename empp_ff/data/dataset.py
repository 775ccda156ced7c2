"""Torch view of a store: one ``torch_geometric.data.Data`` graph per structure.

Attribute names matter for PyG batching: ``edge_index`` is incremented by node
counts when batching (PyG keys on names containing "index"/"face"), so no other
attribute may contain those substrings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from empp_ff.data.store import StructureStore
from empp_ff.neighbours import neighbour_graph

__all__ = ["GraphDataset", "make_loader", "epoch_generator"]


class GraphDataset(Dataset):
    """Structures ``store[indices[k]]`` as graphs with edges within ``r_max``.

    Fields: positions [n,3] (``dtype``), atomic_numbers long [n], edge_index long [2,E],
    shifts [E,3] (Cartesian, MACE convention: vec = pos[recv] - pos[send] + shift),
    energy [1] (NaN if missing), forces [n,3] (zeros if missing), has_energy bool [1],
    has_forces bool [1], cell [1,3,3] (zeros if none), n_atoms long [1].
    Graphs are built on the fly in ``__getitem__`` (workers parallelise this).
    """

    def __init__(
        self,
        store: StructureStore | str,
        indices: Sequence[int] | np.ndarray | None,
        r_max: float,
        dtype: torch.dtype = torch.float64,
        use_forces: bool = True,
    ) -> None:
        self.store = store if isinstance(store, StructureStore) else StructureStore(store)
        n = len(self.store)
        if indices is None:
            self.indices = np.arange(n, dtype=np.int64)
        else:
            self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if self.indices.size and (self.indices.min() < -n or self.indices.max() >= n):
            raise IndexError(f"indices out of range for store {self.store.path!r} with {n} structures")
        self.r_max = float(r_max)
        self.dtype = dtype
        # False: serve the data as energy-only (force labels ignored), e.g. GEOM-Drug.
        self.use_forces = bool(use_forces)

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def __getitem__(self, k: int) -> Data:
        s = self.store[int(self.indices[k])]
        ei, shifts = neighbour_graph(s.positions, self.r_max, s.cell, s.pbc)
        n = s.n_atoms
        dt = self.dtype
        forces = s.forces if self.use_forces else None
        return Data(
            positions=torch.as_tensor(s.positions, dtype=dt),
            atomic_numbers=torch.as_tensor(s.atomic_numbers, dtype=torch.long),
            edge_index=torch.as_tensor(ei, dtype=torch.long),
            shifts=torch.as_tensor(shifts, dtype=dt),
            energy=torch.tensor([np.nan if s.energy is None else s.energy], dtype=dt),
            forces=torch.zeros((n, 3), dtype=dt) if forces is None else torch.as_tensor(forces, dtype=dt),
            has_energy=torch.tensor([s.energy is not None]),
            has_forces=torch.tensor([forces is not None]),
            cell=torch.as_tensor(np.zeros((3, 3)) if s.cell is None else s.cell, dtype=dt).reshape(1, 3, 3),
            n_atoms=torch.tensor([n], dtype=torch.long),
            num_nodes=n,
        )


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A generator that depends only on (seed, epoch): resumed runs replay the same order."""
    g = torch.Generator()
    g.manual_seed((int(seed) * 1_000_003 + int(epoch)) % (2**63 - 1))
    return g


def make_loader(
    dataset: GraphDataset,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    epoch: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """PyG DataLoader with a deterministic per-epoch shuffle (build one per epoch).

    Epoch e's order depends only on (seed, e), whether or not training was resumed.
    """
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=epoch_generator(seed, epoch) if shuffle else None,
        num_workers=num_workers,
        drop_last=drop_last,
        persistent_workers=False,
    )
