"""Splits (reproducible, disjoint, sized) and statistics (E0 fit, shift/scale)."""

from __future__ import annotations

import numpy as np
import pytest

from empp_ff.data.splits import load_splits, make_splits, save_splits
from empp_ff.data.statistics import compute_statistics, fit_e0s
from empp_ff.data.store import StructureStore, write_store
from empp_ff.data.structure import Structure


def test_md17_protocol_sizes_disjoint_reproducible():
    a = make_splits(1200, 950, 50, seed=1)
    b = make_splits(1200, 950, 50, seed=1)
    c = make_splits(1200, 950, 50, seed=2)
    assert [len(a[k]) for k in ("train", "val", "test")] == [950, 50, 200]
    allidx = np.concatenate([a["train"], a["val"], a["test"]])
    assert len(set(allidx.tolist())) == 1200 and allidx.min() == 0 and allidx.max() == 1199
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["train"], c["train"])
    # documented: a permutation from default_rng(seed)
    np.testing.assert_array_equal(a["train"], np.random.default_rng(1).permutation(1200)[:950])


def test_fractions_and_explicit_test():
    s = make_splits(1000, 0.8, 0.1)
    assert [len(s[k]) for k in ("train", "val", "test")] == [800, 100, 100]
    s = make_splits(1000, 0.5, 0.1, n_test=0.2)
    assert [len(s[k]) for k in ("train", "val", "test")] == [500, 100, 200]
    s = make_splits(10, 3, 2, n_test=1)
    assert len(s["test"]) == 1


def test_too_large_errors_name_numbers():
    with pytest.raises(ValueError, match=r"n_train=950.*n_val=100.*n=1000"):
        make_splits(1000, 950, 100)
    with pytest.raises(ValueError, match=r"n=10"):
        make_splits(10, 5, 3, n_test=5)
    with pytest.raises(ValueError, match="fraction"):
        make_splits(10, 2.5, 1)


def test_save_load(tmp_path):
    s = make_splits(100, 50, 10, seed=7)
    p = tmp_path / "splits.json"
    save_splits(p, s, seed=7, n=100)
    import json

    doc = json.loads(p.read_text())
    assert doc["seed"] == 7 and doc["n"] == 100 and doc["train"] == s["train"].tolist()
    r = load_splits(p, n=100)
    for k in ("train", "val", "test"):
        np.testing.assert_array_equal(r[k], s[k])
        assert r[k].dtype == np.int64
    with pytest.raises(ValueError, match="n=100.*n=50"):
        load_splits(p, n=50)


E0 = {1: -13.6, 6: -1029.0, 8: -2041.0}


def _store(tmp_path, noise=1e-4, n=60, with_forces=True):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        z = np.concatenate([[1] * rng.integers(1, 7), [6] * rng.integers(0, 4), [8] * rng.integers(0, 3)])
        pos = rng.uniform(0, 4, size=(len(z), 3))
        e = sum(E0[int(a)] for a in z) + rng.normal() * noise
        f = rng.normal(scale=0.5, size=(len(z), 3)) if with_forces and i % 4 else None
        out.append(Structure(z, pos, energy=None if i == 5 else e, forces=f))
    return StructureStore(write_store(out, tmp_path / "s.h5", {})), out


def test_fit_e0s_recovers_known(tmp_path):
    st, _ = _store(tmp_path)
    e0 = fit_e0s(st, np.arange(len(st)))
    assert sorted(e0) == [1, 6, 8]
    for z, v in E0.items():
        assert e0[z] == pytest.approx(v, abs=1e-3), z
    e0b = fit_e0s(st, np.arange(len(st)), species=[1, 6, 8, 9])
    assert e0b[9] == 0.0  # absent species: min-norm -> 0
    with pytest.raises(ValueError, match=r"elements \[6, 8\].*species=\[1\]"):
        fit_e0s(st, np.arange(len(st)), species=[1])


def test_fit_e0s_single_composition_min_norm(tmp_path):
    z = np.array([6, 1, 1, 1, 1])
    rng = np.random.default_rng(0)
    ss = [Structure(z, rng.normal(size=(5, 3)), energy=-100.0 + 0.01 * rng.normal()) for _ in range(10)]
    st = StructureStore(write_store(ss, tmp_path / "m.h5", {}))
    e0 = fit_e0s(st, range(10))
    mean_e = np.mean(st.energies())
    assert e0[6] + 4 * e0[1] == pytest.approx(mean_e, abs=1e-9)
    assert e0[1] == pytest.approx(4 * e0[6], rel=1e-9)  # min-norm: proportional to counts (1, 4)


def test_compute_statistics(tmp_path):
    st, src = _store(tmp_path)
    idx = np.arange(len(st))
    stats = compute_statistics(st, idx, E0, r_max=2.0)
    with_e = [s for s in src if s.energy is not None]
    e_int = [(s.energy - sum(E0[int(a)] for a in s.atomic_numbers)) / s.n_atoms for s in with_e]
    assert stats["n_with_energy"] == len(with_e) == len(src) - 1
    assert stats["mean_interaction_energy_per_atom"] == pytest.approx(np.mean(e_int), abs=1e-12)
    assert stats["interaction_energy_per_atom_std"] == pytest.approx(np.std(e_int), abs=1e-12)
    fs = np.concatenate([s.forces.ravel() for s in src if s.forces is not None])
    assert stats["rms_force_component"] == pytest.approx(np.sqrt(np.mean(fs**2)))
    assert stats["rms_forces"] == stats["rms_force_component"]
    assert stats["energy_mean"] == pytest.approx(np.mean([s.energy for s in with_e]))
    assert stats["energy_std"] == pytest.approx(np.std([s.energy for s in with_e]))
    nn = [(np.linalg.norm(s.positions[:, None] - s.positions[None], axis=-1) <= 2.0).sum() - s.n_atoms for s in src]
    assert stats["avg_num_neighbors"] == pytest.approx(sum(nn) / sum(s.n_atoms for s in src))
    sub = compute_statistics(st, idx, E0, r_max=2.0, max_structures=10)
    assert sub["n_structures"] == 10


def test_statistics_without_forces_falls_back(tmp_path):
    st, _ = _store(tmp_path, noise=0.05, with_forces=False)
    stats = compute_statistics(st, np.arange(len(st)), E0, r_max=2.0)
    assert stats["rms_force_component"] is None and stats["n_with_forces"] == 0
    assert stats["rms_forces"] == pytest.approx(stats["interaction_energy_per_atom_std"])
    assert stats["rms_forces"] > 0
