"""HDF5 store: round trip, missing labels, atomic write, lazy access, convert()."""

from __future__ import annotations

import json
import os
import pickle

import h5py
import numpy as np
import pytest

from empp_ff.data.conversion import convert
from empp_ff.data.store import StructureStore, write_store
from empp_ff.data.structure import Structure


def _structs():
    rng = np.random.default_rng(0)
    out = []
    for i in range(7):
        n = 2 + i % 3
        out.append(
            Structure(
                atomic_numbers=rng.integers(1, 9, size=n),
                positions=rng.normal(size=(n, 3)),
                energy=None if i == 3 else float(-i),
                forces=None if i in (0, 5) else rng.normal(size=(n, 3)),
                cell=np.eye(3) * 10 if i == 6 else None,
                pbc=np.array([True, True, True]) if i == 6 else np.zeros(3, bool),
                name=f"m{i}" if i % 2 else "",
            )
        )
    return out


@pytest.mark.parametrize("chunk", [2, 100])
def test_round_trip(tmp_path, chunk):
    src = _structs()
    p = write_store(src, tmp_path / "s.h5", {"who": "test"}, chunk=chunk)
    for cache in (0, 10**9):  # lazy h5py path and in-memory path
        with StructureStore(p, cache_bytes=cache) as st:
            assert len(st) == 7
            np.testing.assert_array_equal(st.n_atoms, [s.n_atoms for s in src])
            assert st.has_energy and st.has_forces
            assert st.attrs["units_energy"] == "eV" and st.attrs["units_length"] == "Angstrom"
            assert st.attrs["units_forces"] == "eV/Angstrom"
            assert st.attrs["n_structures"] == 7 and st.attrs["empp_ff_store"] == 1
            assert json.loads(st.attrs["provenance"]) == {"who": "test"}
            e = st.energies()
            assert np.isnan(e[3]) and e[4] == -4.0
            np.testing.assert_array_equal(st.species(), np.unique(np.concatenate([s.atomic_numbers for s in src])))
            for i, s in enumerate(src):
                r = st[i]
                np.testing.assert_array_equal(r.atomic_numbers, s.atomic_numbers)
                np.testing.assert_array_equal(r.positions, s.positions)
                assert r.energy == s.energy
                assert (r.forces is None) == (s.forces is None), i
                if s.forces is not None:
                    np.testing.assert_array_equal(r.forces, s.forces)
                assert r.name == s.name
                np.testing.assert_array_equal(r.pbc, s.pbc)
                assert (r.cell is None) == (s.cell is None)
            assert st[-1].pbc.all()
            with pytest.raises(IndexError):
                st[7]
    with h5py.File(p) as f:  # missing forces are NaN rows on disk
        a, b = f["offsets"][0], f["offsets"][1]
        assert np.isnan(f["forces"][a:b]).all()


def test_energy_only_and_unlabelled(tmp_path):
    rng = np.random.default_rng(1)
    e_only = [Structure([1, 8], rng.normal(size=(2, 3)), energy=-3.0) for _ in range(3)]
    p = write_store(e_only, tmp_path / "e.h5", {})
    with StructureStore(p) as st, h5py.File(p) as f:
        assert st.has_energy and not st.has_forces and "forces" not in f and "names" not in f
        assert st[1].energy == -3.0 and st[1].forces is None
    bare = [Structure([6], rng.normal(size=(1, 3))) for _ in range(2)]
    q = write_store(bare, tmp_path / "b.h5", {})
    with StructureStore(q) as st:
        assert not st.has_energy and not st.has_forces
        assert st[0].energy is None and np.isnan(st.energies()).all()


def test_forces_appear_late(tmp_path):
    """Forces first seen after several flushes: earlier structures read back as None."""
    rng = np.random.default_rng(2)
    src = [Structure([1, 1], rng.normal(size=(2, 3)), energy=1.0) for _ in range(5)]
    src.append(Structure([1, 1], rng.normal(size=(2, 3)), energy=1.0, forces=np.ones((2, 3))))
    p = write_store(src, tmp_path / "late.h5", {}, chunk=2)
    with StructureStore(p, cache_bytes=0) as st:
        assert st.has_forces
        assert all(st[i].forces is None for i in range(5))
        np.testing.assert_array_equal(st[5].forces, 1.0)


def test_atomic_write(tmp_path):
    def boom():
        yield from _structs()[:4]
        raise RuntimeError("reader crashed")

    out = tmp_path / "final.h5"
    with pytest.raises(RuntimeError, match="reader crashed"):
        write_store(boom(), out, {}, chunk=2)
    assert not out.exists()
    assert os.listdir(tmp_path) == []  # no temp file left behind either


def test_not_a_store(tmp_path):
    p = tmp_path / "x.h5"
    with h5py.File(p, "w") as f:
        f["a"] = 1
    with pytest.raises(ValueError, match="not an empp-ff store"):
        StructureStore(p)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        StructureStore(tmp_path / "missing.h5")


def test_lazy_handle_reopens_after_pickle_and_pid_change(tmp_path):
    p = write_store(_structs(), tmp_path / "s.h5", {})
    st = StructureStore(p, cache_bytes=0)
    assert st._f is None  # nothing opened before first access
    e4 = st[4].energy
    st2 = pickle.loads(pickle.dumps(st))
    assert st2._f is None and st2[4].energy == e4
    st._pid = -1  # pretend we are in a forked child: must reopen, not reuse
    old = st._f
    assert st[4].energy == e4 and st._f is not old
    st.close()
    st2.close()


def test_convert_provenance(tmp_path):
    rng = np.random.default_rng(3)
    src = tmp_path / "m.npz"
    np.savez(src, z=np.array([6, 1]), R=rng.normal(size=(5, 2, 3)), E=rng.normal(size=(5, 1)),
             F=rng.normal(size=(5, 2, 3)))
    out = convert(src, tmp_path / "m.h5", progress=False)
    with StructureStore(out) as st:
        assert len(st) == 5 and st.attrs["source_format"] == "md17"
        prov = st.provenance
        import hashlib

        assert prov["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
        assert prov["format"] == "md17" and prov["input"].endswith("m.npz") and "empp_ff_version" in prov
