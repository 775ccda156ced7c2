"""EMPPCalculator: physics (forces = -grad E, invariances, periodic images,
stress), the skin neighbour list, input validation and global state."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.calculator import PropertyNotImplementedError
from scipy.spatial.transform import Rotation

from empp_ff import EMPPCalculator
from empp_ff.export import ModelFileError, export_model
from empp_ff.testing.models import demo_checkpoint

from conftest import ethanol

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model64(tmp_path_factory):
    root = tmp_path_factory.mktemp("calc")
    ckpt = demo_checkpoint(root / "ckpt.pt", seed=3)
    return export_model(ckpt, root / "m64.pt")


@pytest.fixture(scope="module")
def calc(model64):
    return EMPPCalculator(model64, device="cpu")


def fresh(model, **kw):
    return EMPPCalculator(model, device="cpu", **kw)


@pytest.mark.slow
def test_properties_and_shapes(calc):
    atoms = ethanol()
    atoms.calc = calc
    e = atoms.get_potential_energy()
    assert isinstance(e, float) and np.isfinite(e)
    assert atoms.get_potential_energy(force_consistent=True) == e
    energies = atoms.get_potential_energies()
    assert energies.shape == (9,) and energies.sum() == pytest.approx(e, abs=1e-9)
    assert atoms.get_forces().shape == (9, 3)
    # Newton's third law: no net force on an isolated molecule
    assert np.abs(atoms.get_forces().sum(axis=0)).max() < 1e-10
    with pytest.raises(PropertyNotImplementedError, match="periodic"):
        atoms.get_stress()


def test_forces_are_minus_gradient(calc):
    atoms = ethanol()
    atoms.calc = calc
    forces = atoms.get_forces()
    h = 1e-4
    fd = np.zeros_like(forces)
    for i in range(len(atoms)):
        for k in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[i, k] += h
            minus.positions[i, k] -= h
            plus.calc = minus.calc = calc
            fd[i, k] = -(plus.get_potential_energy() - minus.get_potential_energy()) / (2 * h)
    np.testing.assert_allclose(forces, fd, atol=1e-6 * max(1.0, np.abs(forces).max()))


def test_rotation_translation_permutation_invariance(calc):
    atoms = ethanol()
    atoms.calc = calc
    e0, f0 = atoms.get_potential_energy(), atoms.get_forces()
    rot = Rotation.random(random_state=1).as_matrix()
    moved = atoms.copy()
    moved.positions = atoms.positions @ rot.T + np.array([3.0, -7.5, 11.2])
    moved.calc = calc
    assert moved.get_potential_energy() == pytest.approx(e0, abs=1e-9)
    np.testing.assert_allclose(moved.get_forces(), f0 @ rot.T, atol=1e-9)
    perm = np.random.default_rng(0).permutation(len(atoms))
    shuffled = atoms[perm]
    shuffled.calc = calc
    assert shuffled.get_potential_energy() == pytest.approx(e0, abs=1e-9)
    np.testing.assert_allclose(shuffled.get_forces(), f0[perm], atol=1e-9)
    np.testing.assert_allclose(shuffled.get_potential_energies(), atoms.get_potential_energies()[perm], atol=1e-9)


def test_molecule_in_big_periodic_box_matches_non_periodic(calc, model64):
    atoms = ethanol()
    atoms.calc = calc
    boxed = ethanol()
    boxed.cell = np.diag([25.0, 26.0, 27.0])
    boxed.pbc = True
    boxed.positions += 5.0
    boxed.calc = fresh(model64)
    assert boxed.get_potential_energy() == pytest.approx(atoms.get_potential_energy(), abs=1e-9)
    np.testing.assert_allclose(boxed.get_forces(), atoms.get_forces(), atol=1e-9)
    # the molecular virial becomes the stress of an isolated molecule in a box
    virial = np.einsum("ni,nj->ij", atoms.positions, atoms.get_forces())
    stress = boxed.get_stress(voigt=False)
    np.testing.assert_allclose(stress, -0.5 * (virial + virial.T) / boxed.get_volume(), atol=1e-10)
    # vesin on a molecule agrees with the on-device all-pairs list
    via_vesin = ethanol()
    via_vesin.calc = fresh(model64, neighbor_list="vesin")
    assert via_vesin.get_potential_energy() == pytest.approx(atoms.get_potential_energy(), abs=1e-9)


def small_cell():
    # 3 atoms in a 3.2 Å cubic cell: smaller than r_max (4 Å), so atoms see their
    # own periodic images, several times over.
    return Atoms(
        "COH",
        positions=[[0.1, 0.2, 0.0], [1.45, 0.3, 0.25], [0.4, 1.6, 1.7]],
        cell=np.eye(3) * 3.2,
        pbc=True,
    )


def test_small_cell_matches_supercell(model64):
    atoms = small_cell()
    atoms.calc = fresh(model64, min_distance=None)
    big = atoms.repeat((2, 2, 2))
    big.calc = fresh(model64, min_distance=None)
    assert big.get_potential_energy() / len(big) == pytest.approx(
        atoms.get_potential_energy() / len(atoms), abs=1e-10
    )
    np.testing.assert_allclose(big.get_forces(), np.tile(atoms.get_forces(), (8, 1)), atol=1e-9)
    np.testing.assert_allclose(big.get_stress(), atoms.get_stress(), atol=1e-10)


def test_stress_matches_strain_derivative(model64):
    atoms = small_cell()
    atoms.positions[1] += [0.05, -0.1, 0.07]
    atoms.set_cell(atoms.cell.array + np.array([[0.0, 0.2, 0.1], [0.0, 0.0, -0.15], [0.1, 0.0, 0.0]]), scale_atoms=True)
    calc = fresh(model64, min_distance=None)
    atoms.calc = calc
    stress = atoms.get_stress(voigt=False)
    volume = atoms.get_volume()
    h = 1e-5
    fd = np.zeros((3, 3))
    cell0 = atoms.cell.array.copy()
    for i in range(3):
        for j in range(3):
            energies = []
            for sign in (1, -1):
                eps = np.zeros((3, 3))
                eps[i, j] += 0.5 * sign * h
                eps[j, i] += 0.5 * sign * h
                strained = atoms.copy()
                strained.set_cell(cell0 @ (np.eye(3) + eps), scale_atoms=True)
                strained.calc = calc
                energies.append(strained.get_potential_energy())
            fd[i, j] = (energies[0] - energies[1]) / (2 * h) / volume
    np.testing.assert_allclose(stress, fd, atol=1e-7)


def test_skin_list_is_exact_and_reused(model64):
    rng = np.random.default_rng(4)
    atoms = small_cell().repeat((2, 1, 1))
    skinned = fresh(model64, skin=0.6, min_distance=None)
    reference = fresh(model64, skin=0.0, min_distance=None)
    for _ in range(6):
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        a, b = atoms.copy(), atoms.copy()
        a.calc, b.calc = skinned, reference
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), abs=1e-10)
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=1e-10)
    assert skinned.nl_builds < 6 and reference.nl_builds == 6
    # a changed cell forces a rebuild
    builds = skinned.nl_builds
    atoms.set_cell(atoms.cell.array * 1.01, scale_atoms=True)
    atoms.calc = skinned
    atoms.get_potential_energy()
    assert skinned.nl_builds == builds + 1


def test_mixed_pbc_slab(model64):
    slab = small_cell()
    slab.cell[2] = [0, 0, 20.0]
    slab.pbc = [True, True, False]
    slab.calc = fresh(model64, min_distance=None)
    e_slab = slab.get_potential_energy()
    full = slab.copy()
    full.pbc = True  # 20 Å vacuum: periodic images in z are out of range
    full.calc = fresh(model64, min_distance=None)
    assert e_slab == pytest.approx(full.get_potential_energy(), abs=1e-10)
    np.testing.assert_allclose(slab.get_forces(), full.get_forces(), atol=1e-10)
    with pytest.raises(PropertyNotImplementedError):
        slab.get_stress()


def test_unknown_element_is_named(calc):
    atoms = Atoms("CNH", positions=[[0, 0, 0], [1.2, 0, 0], [2.2, 0, 0]])
    atoms.calc = calc
    with pytest.raises(ValueError, match=r"N \(Z=7\).*H \(Z=1\), C \(Z=6\), O \(Z=8\)"):
        atoms.get_potential_energy()


def test_bad_inputs(model64, calc, tmp_path):
    atoms = ethanol()
    atoms.positions[3, 1] = np.nan
    atoms.calc = calc
    with pytest.raises(ValueError, match="NaN"):
        atoms.get_forces()
    empty = Atoms()
    empty.calc = calc
    with pytest.raises(ValueError, match="empty"):
        empty.get_potential_energy()
    with pytest.raises(ValueError, match="export"):
        EMPPCalculator(model64, dtype="float32")
    text = tmp_path / "x.pt"
    text.write_text("not a model")
    with pytest.raises(ModelFileError):
        EMPPCalculator(text)
    with pytest.raises(FileNotFoundError):
        EMPPCalculator(tmp_path / "missing.pt")


def test_close_atoms_warn_once_per_calculator(model64):
    calc = fresh(model64, warn_distance=0.8)
    atoms = Atoms("OH", positions=[[0, 0, 0], [0.6, 0, 0]])
    atoms.calc = calc
    with pytest.warns(RuntimeWarning, match="closer than 0.8"):
        atoms.get_potential_energy()
    atoms.positions[1, 0] = 0.55
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        atoms.get_potential_energy()  # no second warning
    ok = Atoms("OH", positions=[[0, 0, 0], [0.97, 0, 0]])
    ok.calc = fresh(model64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ok.get_potential_energy()


def test_single_atom_and_isolated_atoms(calc):
    atom = Atoms("O", positions=[[0, 0, 0]])
    atom.calc = calc
    assert np.isfinite(atom.get_potential_energy())
    np.testing.assert_array_equal(atom.get_forces(), 0.0)


def test_no_global_state_changes(model64):
    env = dict(os.environ)
    dtype = torch.get_default_dtype()
    threads = torch.get_num_threads()
    calc = EMPPCalculator(model64, device="cpu")
    atoms = ethanol()
    atoms.calc = calc
    atoms.get_forces()
    boxed = small_cell()
    boxed.calc = calc
    boxed.get_stress()
    assert torch.get_default_dtype() == dtype == torch.float32
    assert torch.get_num_threads() == threads
    assert dict(os.environ) == env
    assert torch._C._get_graph_executor_optimize() is True


def test_virial_only_once_stress_is_asked_for(model64):
    calc = fresh(model64, min_distance=None)
    atoms = small_cell()
    atoms.calc = calc
    atoms.get_forces()
    assert "stress" not in calc.results  # NVE/NVT MD never pays for the virial
    stress = atoms.get_stress()
    atoms.positions[0, 0] += 0.01
    atoms.get_forces()
    assert "stress" in calc.results  # from now on computed with the forces (NPT: one call per step)
    assert not np.allclose(calc.results["stress"], stress)
