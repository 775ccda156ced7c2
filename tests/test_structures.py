"""The shared test and benchmark structures (empp_ff.testing.structures): sizes, cells,
compositions and closest contacts of every builder."""

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from empp_ff.testing.structures import (
    ASPIRIN_NUMBERS,
    aspirin,
    liquid_box,
    molecular_box,
    random_rotation,
    separated_cluster,
    water_box,
)

ROOT = Path(__file__).resolve().parents[1]


def _closest(atoms, groups=None) -> float:
    """The smallest minimum-image distance between two atoms of a cubic periodic box (of
    two atoms in different ``groups``, when given)."""
    length = atoms.cell.lengths()
    positions = atoms.get_positions() % length
    tree = cKDTree(positions, boxsize=length)
    pairs = tree.query_pairs(3.0, output_type="ndarray")
    if groups is not None:
        pairs = pairs[groups[pairs[:, 0]] != groups[pairs[:, 1]]]
    diff = positions[pairs[:, 0]] - positions[pairs[:, 1]]
    diff -= length * np.round(diff / length)
    return float(np.linalg.norm(diff, axis=1).min())


def test_aspirin_is_the_md_examples_geometry():
    from ase.io import read

    molecule = aspirin()
    assert molecule.get_chemical_formula() == "C9H8O4" and tuple(molecule.numbers) == ASPIRIN_NUMBERS
    assert not molecule.pbc.any()
    np.testing.assert_allclose(molecule.positions, read(ROOT / "md_examples" / "aspirin.xyz").positions, atol=1e-12)
    boxed = aspirin(box=30.0)
    assert boxed.pbc.all() and np.allclose(boxed.cell.lengths(), 30.0)
    centre = (boxed.positions.min(axis=0) + boxed.positions.max(axis=0)) / 2
    np.testing.assert_allclose(centre, 15.0, atol=1e-9)
    np.testing.assert_allclose(boxed.get_all_distances(), molecule.get_all_distances(), atol=1e-12)
    d = molecule.get_all_distances() + 10 * np.eye(len(molecule))
    assert 0.95 < d.min() < 1.15  # C-H bonds


def test_random_rotation_is_a_rotation():
    rng = np.random.default_rng(3)
    for _ in range(5):
        r = random_rotation(rng)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(r) == pytest.approx(1.0)


def test_molecular_box_keeps_molecules_apart():
    atoms = molecular_box(24, 11.0, seed=1)
    sizes = [3, 6, 3]  # H2O, CH3OH, CO2, in turn
    groups = np.concatenate([np.full(sizes[i % 3], i) for i in range(24)])
    assert len(atoms) == len(groups) == 96 and atoms.get_chemical_formula() == "C16H48O32"
    assert atoms.pbc.all() and np.allclose(atoms.cell.lengths(), 11.0)
    assert ((atoms.get_scaled_positions(wrap=False) >= 0) & (atoms.get_scaled_positions(wrap=False) < 1)).all()
    assert _closest(atoms, groups) >= 2.0
    assert np.array_equal(molecular_box(24, 11.0, seed=1).positions, atoms.positions)  # seeded


def test_liquid_box_is_the_lammps_example_box():
    atoms = liquid_box()  # md_examples/lammps/box.data
    assert len(atoms) == 2628 and atoms.get_chemical_formula() == "C147H1752O729"
    assert np.allclose(atoms.cell.lengths(), 30.6) and atoms.pbc.all()
    small = liquid_box(3)
    assert small.get_chemical_formula() == "C5H64O27" and np.allclose(small.cell.lengths(), 10.2)
    assert ((small.get_scaled_positions(wrap=False) >= 0) & (small.get_scaled_positions(wrap=False) < 1)).all()
    assert _closest(small) > 0.9
    assert _closest(atoms) > 0.4  # the random packing has a few close contacts (LAMMPS scaling: min_distance 0.2)


def test_water_box_density_and_contacts():
    atoms = water_box(350)
    assert len(atoms) == 1050 and atoms.get_chemical_formula() == "H700O350" and atoms.pbc.all()
    grams = atoms.get_masses().sum() * 1.66054e-24
    assert grams / (atoms.get_volume() * 1e-24) == pytest.approx(1.0, rel=1e-3)
    assert _closest(atoms) > 0.85
    assert _closest(water_box(40, seed=1)) > 0.9


def test_separated_cluster():
    pos, z = separated_cluster(seed=2, n=12)
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1) + 10 * np.eye(12)
    assert pos.shape == (12, 3) and set(z) <= {1, 6, 8} and d.min() > 0.9 and np.abs(pos).max() <= 2.0
