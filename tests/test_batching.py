"""Budget batching: budget respected, exactly-once coverage, determinism, ranks disjoint."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from empp_ff.data.batching import BudgetBatchSampler, make_budget_loader, pack_batches


def _sizes(n=200, seed=0):
    return np.random.default_rng(seed).integers(3, 40, size=n)


def test_budget_and_exactly_once():
    sizes = _sizes()
    for shuffle in (False, True):
        s = BudgetBatchSampler(sizes, 100, shuffle=shuffle, seed=3, epoch=1)
        batches = list(s)
        assert len(batches) == len(s)
        assert all(sizes[b].sum() <= 100 for b in batches)
        flat = np.concatenate(batches)
        assert sorted(flat.tolist()) == list(range(len(sizes)))
        # greedy: a batch closes only when the next item would not fit
        for a, b in zip(batches[:-1], batches[1:]):
            assert sizes[a].sum() + sizes[b[0]] > 100
    ordered = np.concatenate(list(BudgetBatchSampler(sizes, 100, shuffle=False)))
    assert ordered.tolist() == list(range(len(sizes)))


def test_deterministic_per_seed_epoch():
    sizes = _sizes()
    a = list(BudgetBatchSampler(sizes, 80, shuffle=True, seed=5, epoch=2))
    b = list(BudgetBatchSampler(sizes, 80, shuffle=True, seed=5, epoch=2))
    assert a == b
    s = BudgetBatchSampler(sizes, 80, shuffle=True, seed=5, epoch=0)
    e0 = list(s)
    s.set_epoch(2)
    assert list(s) == a and e0 != a
    assert list(BudgetBatchSampler(sizes, 80, shuffle=True, seed=6, epoch=2)) != a


def test_oversize_single_warns_once_or_errors():
    sizes = np.array([5, 50, 5, 60, 5])
    s = BudgetBatchSampler(sizes, 20, shuffle=False)
    with pytest.warns(UserWarning, match="2 structure\\(s\\) exceed .* index 1 with size 50"):
        batches = list(s)
    assert batches == [[0], [1], [2], [3], [4]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s.set_epoch(1)
        list(s)  # no second warning
    with pytest.raises(ValueError, match="exceed the batch budget max_size=20"):
        list(BudgetBatchSampler(sizes, 20, shuffle=False, oversize="error"))


def test_max_graphs_and_pack():
    batches, over = pack_batches(np.arange(10), np.ones(10, int), 100, max_graphs=4)
    assert [len(b) for b in batches] == [4, 4, 2] and over.size == 0


@pytest.mark.parametrize("drop_last", [False, True])
def test_distributed_disjoint_equal(drop_last):
    sizes = _sizes(203, seed=1)
    R = 3
    full = BudgetBatchSampler(sizes, 90, shuffle=True, seed=2, epoch=4)
    nb = len(full)
    per = [list(BudgetBatchSampler(sizes, 90, shuffle=True, seed=2, epoch=4, num_replicas=R, rank=r,
                                   drop_last=drop_last)) for r in range(R)]
    lens = {len(p) for p in per}
    assert len(lens) == 1
    assert lens.pop() == (nb // R if drop_last else -(-nb // R))
    assert all(len(p) == len(BudgetBatchSampler(sizes, 90, num_replicas=R, rank=0, seed=2, epoch=4,
                                                 drop_last=drop_last)) for p in per)
    if nb % R == 0:
        pytest.skip("no padding case at this size")
    # unpadded part: disjoint across ranks, and together the full epoch
    real = nb // R * R if drop_last else nb
    seen = [i for r in range(R) for k, b in enumerate(per[r]) if k * R + r < real for i in b]
    assert len(seen) == len(set(seen))
    if not drop_last:
        assert sorted(seen) == list(range(len(sizes)))
        # padding repeats whole batches from the start of the epoch
        pad = [b for r in range(R) for k, b in enumerate(per[r]) if k * R + r >= real]
        assert pad == [b.tolist() for b in full.all_batches()[: len(pad)]]


def test_pyg_loader_with_store(tmp_path):
    from empp_ff.data.dataset import GraphDataset
    from empp_ff.data.store import StructureStore, write_store
    from empp_ff.data.structure import Structure

    rng = np.random.default_rng(0)
    structs = [Structure(atomic_numbers=np.full(n, 6), positions=rng.normal(size=(n, 3)) * 2, energy=float(n))
               for n in rng.integers(2, 12, size=30)]
    p = write_store(structs, tmp_path / "s.h5")
    st = StructureStore(p)
    idx = np.arange(5, 30)
    ds = GraphDataset(st, idx, r_max=3.0)
    loader = make_budget_loader(ds, max_atoms=25, shuffle=True, seed=1, epoch=0)
    seen = []
    for batch in loader:
        assert batch.num_nodes <= 25
        assert int(batch.n_atoms.sum()) == batch.num_nodes
        seen.extend(batch.energy.long().tolist())
    assert sorted(seen) == sorted(st.n_atoms[idx].tolist())
