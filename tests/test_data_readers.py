"""Readers: every format on tiny synthetic files, unit conversion, errors."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from empp_ff.data.readers import detect_format, read_structures
from empp_ff.data.store import write_store
from empp_ff.data.structure import Structure

KCAL = 0.0433641  # eV per kcal/mol, as in the brief (exact: ase.units.kcal / ase.units.mol)
Z = np.array([8, 1, 1])


def _traj(m: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    R = rng.normal(size=(m, 3, 3))
    E = rng.normal(size=(m,)) * 10 - 1000
    F = rng.normal(size=(m, 3, 3))
    return R, E, F


def test_md17_units_and_shapes(tmp_path):
    R, E, F = _traj()
    p = tmp_path / "mol.npz"
    np.savez(p, z=Z, R=R, E=E[:, None], F=F, name=np.array("water"))
    assert detect_format(p) == "md17"
    out = list(read_structures(p))
    assert len(out) == 4
    s = out[2]
    assert s.name == "water"
    assert s.atomic_numbers.dtype == np.int64 and s.atomic_numbers.tolist() == [8, 1, 1]
    np.testing.assert_array_equal(s.positions, R[2])
    assert s.energy == pytest.approx(E[2] * KCAL, rel=1e-6)
    np.testing.assert_allclose(s.forces, F[2] * KCAL, rtol=1e-6)
    assert not s.pbc.any() and s.cell is None


def test_md17_energy_1d_and_energy_only(tmp_path):
    R, E, _ = _traj()
    p = tmp_path / "eonly.npz"
    np.savez(p, z=Z, R=R, E=E)
    out = list(read_structures(p, fmt="md17"))
    assert out[0].forces is None
    assert out[1].energy == pytest.approx(E[1] * KCAL, rel=1e-6)


def test_rmd17(tmp_path):
    R, E, F = _traj()
    p = tmp_path / "r.npz"
    np.savez(p, nuclear_charges=Z, coords=R, energies=E, forces=F, old_energies=E + 1)
    assert detect_format(p) == "rmd17"
    out = list(read_structures(p))
    assert out[3].energy == pytest.approx(E[3] * KCAL, rel=1e-6)  # recomputed, not old_
    np.testing.assert_allclose(out[3].forces, F[3] * KCAL, rtol=1e-6)


def test_npz_unknown_keys_named(tmp_path):
    p = tmp_path / "bad.npz"
    np.savez(p, foo=np.zeros(3), bar=np.zeros(2))
    with pytest.raises(ValueError, match=r"bar.*foo.*expected.*'z'"):
        detect_format(p)
    with pytest.raises(ValueError, match=r"\['bar', 'foo'\].*\['z', 'R'"):
        list(read_structures(p, fmt="md17"))


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        read_structures(tmp_path / "nope.npz")
    p = tmp_path / "x.txt"
    p.write_text("hello")
    with pytest.raises(ValueError, match=r"x.txt.*unknown file type"):
        read_structures(p)
    with pytest.raises(ValueError, match="Unknown format 'weird'"):
        read_structures(p, fmt="weird")


def _atoms_list():
    a1 = Atoms("H2O", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    a1.calc = SinglePointCalculator(a1, energy=-14.2, forces=np.arange(9.0).reshape(3, 3))
    a2 = Atoms("CH4", positions=np.random.default_rng(1).normal(size=(5, 3)), cell=np.eye(3) * 6, pbc=True)
    a2.info["REF_energy"] = -24.0
    a2.arrays["REF_forces"] = np.ones((5, 3))
    a3 = Atoms("N2", positions=[[0, 0, 0], [1.1, 0, 0]])  # unlabelled
    return a1, a2, a3


def test_extxyz_labels_calc_and_custom_keys(tmp_path):
    import ase.io

    a1, a2, a3 = _atoms_list()
    p = tmp_path / "d.extxyz"
    ase.io.write(p, [a1, a3], format="extxyz")
    assert detect_format(p) == "extxyz"
    s1, s3 = list(read_structures(p))
    assert s1.energy == pytest.approx(-14.2)
    np.testing.assert_allclose(s1.forces, np.arange(9.0).reshape(3, 3))
    assert s3.energy is None and s3.forces is None

    q = tmp_path / "c.xyz"
    ase.io.write(q, [a2], format="extxyz")
    (s2,) = list(read_structures(q, energy_key="REF_energy", forces_key="REF_forces"))
    assert s2.energy == pytest.approx(-24.0)
    np.testing.assert_allclose(s2.forces, np.ones((5, 3)))
    assert s2.pbc.all() and np.allclose(s2.cell, np.eye(3) * 6)
    with pytest.raises(ValueError, match=r"energy_key='typo'.*REF_energy"):
        list(read_structures(q, energy_key="typo"))


def test_asedb(tmp_path):
    import ase.db

    a1, a2, a3 = _atoms_list()
    p = tmp_path / "d.db"
    with ase.db.connect(p) as db:
        db.write(a1, name="water")
        db.write(a3)
        db.write(Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]]), my_e=-1.5, data={"my_f": np.full((2, 3), 0.5)})
    assert detect_format(p) == "asedb"
    s1, s3, _ = list(read_structures(p))
    assert s1.name == "water" and s1.energy == pytest.approx(-14.2)
    np.testing.assert_allclose(s1.forces, np.arange(9.0).reshape(3, 3))
    assert s3.energy is None and s3.forces is None
    out = list(read_structures(p, energy_key="my_e", forces_key="my_f"))
    assert out[2].energy == pytest.approx(-1.5)
    np.testing.assert_allclose(out[2].forces, 0.5)
    with pytest.raises(ValueError, match=r"forces_key='nope'"):
        list(read_structures(p, forces_key="nope"))


def _geom(path, units=None, forces=True):
    rng = np.random.default_rng(2)
    with h5py.File(path, "w") as f:
        if units is not None:
            f.attrs["units"] = units
        for name, z in (("aspirin", [6, 6, 8]), ("ethanol", [6, 8, 1, 1])):
            g = f.create_group(name)
            g["atomic_numbers"] = np.array(z)
            g["positions"] = rng.normal(size=(2, len(z), 3))
            g["energy"] = np.array([-10.0, -11.0])
            if forces:
                g["forces"] = np.ones((2, len(z), 3))


def test_geom_h5_default_ev(tmp_path):
    p = tmp_path / "g.h5"
    _geom(p, units="positions: Angstrom; energy: eV; forces: eV/Angstrom")
    assert detect_format(p) == "geom_h5"
    out = list(read_structures(p))
    assert [s.name for s in out] == ["aspirin", "aspirin", "ethanol", "ethanol"]
    assert out[1].energy == pytest.approx(-11.0)
    np.testing.assert_allclose(out[2].forces, 1.0)


@pytest.mark.parametrize("units,factor", [("kcal/mol", KCAL), ("Hartree", 27.211386), ("energy: kcal/mol", KCAL)])
def test_geom_h5_unit_attr(tmp_path, units, factor):
    p = tmp_path / "g.hdf5"
    _geom(p, units=units)
    s = list(read_structures(p))[0]
    assert s.energy == pytest.approx(-10.0 * factor, rel=1e-6)
    np.testing.assert_allclose(s.forces, factor, rtol=1e-6)


def test_geom_h5_energy_only_and_missing_keys(tmp_path):
    p = tmp_path / "g.h5"
    _geom(p, forces=False)
    assert all(s.forces is None for s in read_structures(p))
    q = tmp_path / "bad.h5"
    with h5py.File(q, "w") as f:
        f.create_group("mol")["coords"] = np.zeros((1, 2, 3))
    with pytest.raises(ValueError, match=r"bad.h5.*\['mol'\].*attributes"):
        detect_format(q)
    with pytest.raises(ValueError, match=r"\['coords'\].*atomic_numbers"):
        list(read_structures(q, fmt="geom_h5"))


def test_store_format_roundtrip(tmp_path):
    s = Structure(atomic_numbers=[1, 1], positions=np.zeros((2, 3)) + [[0, 0, 0], [0.7, 0, 0]], energy=-1.0)
    p = write_store([s, s], tmp_path / "s.h5", {"x": 1})
    assert detect_format(p) == "store"
    out = list(read_structures(p))
    assert len(out) == 2 and out[1].energy == -1.0 and out[1].forces is None


def test_structure_validation():
    with pytest.raises(ValueError, match=r"positions must have shape \(2, 3\)"):
        Structure(atomic_numbers=[1, 1], positions=np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"forces must have shape \(2, 3\)"):
        Structure(atomic_numbers=[1, 1], positions=np.zeros((2, 3)), forces=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="cell"):
        Structure(atomic_numbers=[1], positions=np.zeros((1, 3)), pbc=[True, True, True])
