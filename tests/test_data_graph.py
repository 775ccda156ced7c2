"""Neighbour graphs (MACE convention), GraphDataset fields and PyG batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from empp_ff.data.dataset import GraphDataset, make_loader
from empp_ff.data.store import StructureStore, write_store
from empp_ff.data.structure import Structure
from empp_ff.neighbours import neighbour_graph


def _edges(ei, sh):
    return {(int(s), int(r), *np.round(x, 6)) for s, r, x in zip(ei[0], ei[1], sh)}


def test_molecule_all_pairs_convention():
    pos = np.array([[0.0, 0, 0], [1.0, 0, 0], [0, 1.5, 0], [5.0, 5, 5]])
    ei, sh = neighbour_graph(pos, 1.6)
    assert ei.dtype == np.int64 and sh.shape == (ei.shape[1], 3)
    pairs = {(int(a), int(b)) for a, b in ei.T}
    assert pairs == {(0, 1), (1, 0), (0, 2), (2, 0)}  # 1-2 is sqrt(3.25) > 1.6; atom 3 isolated
    assert not np.any(ei[0] == ei[1])
    vec = pos[ei[1]] - pos[ei[0]] + sh
    assert np.all(np.linalg.norm(vec, axis=1) < 1.6)


def test_periodic_big_box_equals_molecule():
    rng = np.random.default_rng(0)
    pos = rng.uniform(10, 14, size=(12, 3))
    a = neighbour_graph(pos, 3.0)
    b = neighbour_graph(pos, 3.0, cell=np.eye(3) * 50, pbc=[True, True, True])
    assert len(a[0][0]) > 0
    assert _edges(*a) == _edges(*b)
    np.testing.assert_array_equal(a[0], b[0])  # same deterministic order


def _supercell_count(pos, cell, r, reps=3):
    """Neighbours of the central-image atoms within r, counted in an explicit supercell."""
    rng_ = range(-reps, reps + 1)
    images = np.array([[i, j, k] for i in rng_ for j in rng_ for k in rng_]) @ cell
    allpos = (pos[None] + images[:, None]).reshape(-1, 3)
    d = np.linalg.norm(pos[:, None] - allpos[None], axis=-1)
    return int(((d < r) & (d > 1e-9)).sum())


@pytest.mark.parametrize("r", [2.5, 3.9, 5.3])  # r > cell: several image shells; avoid r on an image distance
def test_small_cubic_cell_matches_supercell(r):
    cell = np.eye(3) * 2.0  # smaller than the cutoff: self-images must be included
    pos = np.array([[0.1, 0.2, 0.3], [1.1, 0.9, 1.2]])
    ei, sh = neighbour_graph(pos, r, cell=cell, pbc=[True, True, True])
    assert ei.shape[1] == _supercell_count(pos, cell, r)
    assert np.any(ei[0] == ei[1])  # periodic self-images present
    vec = pos[ei[1]] - pos[ei[0]] + sh
    assert np.all(np.linalg.norm(vec, axis=1) < r)
    # shifts are Cartesian multiples of the cell vectors
    np.testing.assert_allclose(sh / 2.0, np.round(sh / 2.0), atol=1e-12)


def _store(tmp_path):
    a = Structure([8, 1, 1], [[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], energy=-14.0, forces=np.ones((3, 3)))
    b = Structure([6, 8], [[0, 0, 0], [1.13, 0, 0]])  # no labels
    c = Structure([1], [[0.5, 0.5, 0.5]], energy=-1.0, cell=np.eye(3) * 1.0, pbc=[True, True, True])
    return StructureStore(write_store([a, b, c], tmp_path / "g.h5", {}))


def test_dataset_fields_and_batch_increments(tmp_path):
    st = _store(tmp_path)
    ds = GraphDataset(st, [0, 1, 2], r_max=1.5)
    d0, d1 = ds[0], ds[1]
    assert d0.positions.dtype == torch.float64 and d0.atomic_numbers.dtype == torch.long
    assert d0.edge_index.shape == (2, 4) and d1.edge_index.shape == (2, 2)  # H-H = 1.52 > 1.5
    assert d0.energy.shape == (1,) and d0.has_energy.item() and d0.has_forces.item()
    assert torch.isnan(d1.energy).all() and not d1.has_energy.item() and not d1.has_forces.item()
    assert torch.equal(d1.forces, torch.zeros(2, 3)) and d1.cell.shape == (1, 3, 3)
    assert d0.n_atoms.tolist() == [3]
    names = set(d0.keys())
    assert [k for k in names if ("index" in k or "face" in k) and k != "edge_index"] == []
    assert ds[2].edge_index.shape[1] == 18  # 1-atom periodic cell: 6 faces at 1.0 + 12 edges at 1.41
    assert bool(torch.all(ds[2].cell[0] == torch.eye(3, dtype=torch.float64)))

    from torch_geometric.data import Batch

    b = Batch.from_data_list([d0, d1])
    assert torch.equal(b.edge_index[:, :4], d0.edge_index)
    assert torch.equal(b.edge_index[:, 4:], d1.edge_index + 3)  # incremented by node count
    assert b.energy.shape == (2,) and b.cell.shape == (2, 3, 3) and b.n_atoms.tolist() == [3, 2]
    assert b.batch.tolist() == [0, 0, 0, 1, 1]
    ds32 = GraphDataset(st, None, r_max=1.5, dtype=torch.float32)
    assert ds32[0].positions.dtype == torch.float32 and len(ds32) == 3


def test_loader_order_depends_on_seed_epoch_only(tmp_path):
    rng = np.random.default_rng(0)
    ss = [Structure([1], rng.normal(size=(1, 3)), energy=float(i)) for i in range(20)]
    st = StructureStore(write_store(ss, tmp_path / "o.h5", {}))
    ds = GraphDataset(st, None, r_max=1.0)

    def order(seed, epoch):
        return torch.cat([b.energy for b in make_loader(ds, 5, True, seed, epoch)]).tolist()

    o1 = order(3, 1)
    _ = order(3, 0)  # running another epoch first must not change epoch 1
    assert order(3, 1) == o1
    assert order(3, 2) != o1
    assert sorted(o1) == list(map(float, range(20)))
    assert torch.cat([b.energy for b in make_loader(ds, 5, False)]).tolist() == list(map(float, range(20)))


def test_large_molecule_backend_matches_dense(monkeypatch):
    import empp_ff.neighbours as g

    pos = np.random.default_rng(4).uniform(0, 6, size=(40, 3))
    dense = neighbour_graph(pos, 2.2)
    monkeypatch.setattr(g, "_DENSE_MAX_ATOMS", 0)  # force the vesin path for a non-periodic system
    sparse = neighbour_graph(pos, 2.2)
    np.testing.assert_array_equal(dense[0], sparse[0])
    np.testing.assert_array_equal(dense[1], sparse[1])
