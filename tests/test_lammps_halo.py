"""pair_style empp halo mode (layer-by-layer evaluation, node features of ghost atoms
exchanged between layers) and the instability guard.

The periodic-box accuracy tests of both modes on 1, 2 and 4 ranks are in
``test_lammps.py`` (``test_matches_reference_float64``); here: a molecule split
across ranks, the ghost cutoff each mode requests, model files without layer-wise
entry points, ranks without atoms, dynamics, the timing line and the guard.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from empp_ff.testing.lammps import (
    assert_matches_reference,
    lammps_single_point,
    nve_thermo,
    reference,
    run_lammps_input,
)

from conftest import LAMMPS_TEST_MARKS

pytestmark = LAMMPS_TEST_MARKS


@pytest.fixture(scope="module")
def ethanols():
    """Two ethanol molecules 2.5 A apart in a 20 A box: a cluster that any split
    of the box cuts."""
    from ase.build import molecule

    a, b = molecule("CH3CH2OH"), molecule("CH3CH2OH")
    b.translate([2.5, 0.3, 0.2])
    atoms = a + b
    atoms.cell = [20.0, 20.0, 20.0]
    atoms.pbc = True
    atoms.center()
    return atoms


@pytest.fixture(scope="module")
def old_model(plugin, tmp_path_factory):
    """A model file without the layer-wise entry points, as exported before them."""
    from empp_ff.testing.models import make_model

    return make_model(tmp_path_factory.mktemp("old") / "old.pt", r_max=3.5, layerwise=False)


def _ghost_cutoff(log: str) -> float:
    return float(re.search(r"ghost atom cutoff = (\S+)", log).group(1))


@pytest.mark.parametrize("np_ranks", [1, 2, 4])
@pytest.mark.parametrize("halo", ["yes", "no"])
def test_molecule_split_across_ranks(model64, ethanols, np_ranks, halo):
    res = lammps_single_point(model64, ethanols, np_ranks=np_ranks, pair_args=f"halo {halo}")
    assert_matches_reference(res, reference(model64, ethanols), 1e-8)


def test_ghost_cutoff_is_one_r_max_in_halo_mode(plugin, box, tmp_path):
    """Halo mode asks LAMMPS for a ghost shell of r_max + skin whatever the number of
    layers; without it the shell grows with num_interactions * r_max."""
    from empp_ff.testing.models import make_model

    model3 = make_model(tmp_path / "l3.pt", num_interactions=3, r_max=3.5)
    halo = lammps_single_point(model3, box, np_ranks=2, pair_args="halo yes")
    full = lammps_single_point(model3, box, np_ranks=2, pair_args="halo no")
    assert _ghost_cutoff(halo["log"]) == 3.5 + 1.0  # neighbor skin 1.0
    assert _ghost_cutoff(full["log"]) == 3 * 3.5 + 1.0
    assert "halo mode: ghost shell r_max + skin = 4.5 A; 2 exchange(s) of node features" in halo["log"]
    assert_matches_reference(halo, reference(model3, box), 1e-8)  # two exchanges per step, exact
    assert abs(halo["energy"] - full["energy"]) <= 1e-10 * abs(full["energy"])


def test_halo_is_the_default(model64, box):
    res = lammps_single_point(model64, box)
    assert _ghost_cutoff(res["log"]) == 4.5 and "halo mode" in res["log"]


def test_old_model_file_runs_full_shell(old_model, box):
    """Files without layer-wise entry points run as before (full ghost shell), with a
    one-line note; asking for halo mode explicitly is an error that says why."""
    res = lammps_single_point(old_model, box, np_ranks=2)
    assert "no layer-wise entry points: full ghost shell (halo no)" in res["log"]
    assert _ghost_cutoff(res["log"]) == 8.0
    assert_matches_reference(res, reference(old_model, box), 1e-8)
    with pytest.raises(RuntimeError) as err:
        lammps_single_point(old_model, box, pair_args="halo yes")
    error = next(line for line in str(err.value).splitlines() if "ERROR" in line)
    assert "halo yes: model file" in error and "no layer-wise entry points" in error and "halo no" in error


def test_ranks_without_atoms_take_part_in_the_exchanges(model64, tmp_path):
    """A water molecule on 4 ranks split along x: two ranks own no atom. They must
    still make every exchange (or the others would wait forever) and add nothing."""
    from ase.build import molecule

    from empp_ff.inference.lammps.inputs import write_data

    water = molecule("H2O")
    water.cell = [20.0, 20.0, 20.0]
    water.pbc = True
    water.center()
    elements = write_data(water, tmp_path / "w.data")
    ref = reference(model64, water)
    proc = run_lammps_input(tmp_path, f"""
        units metal
        atom_style atomic
        processors 4 1 1
        read_data w.data
        pair_style empp halo yes
        pair_coeff * * {model64} {' '.join(elements)}
        run 0
        print "EMPP_PE $(pe:%.17g)"
    """, np_ranks=4, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "4 by 1 by 1 MPI processor grid" in proc.stdout
    pe = float(proc.stdout.split("EMPP_PE ")[1].split()[0])
    assert abs(pe - ref["energy"]) <= 1e-10 * abs(ref["energy"])


def _nve(model, atoms, workdir, np_ranks, pair_args, steps=20):
    return nve_thermo(model, atoms, workdir, dt_fs=0.25, steps=steps, every=1, columns=("pe", "etotal", "press"),
                      pair_args=pair_args, np_ranks=np_ranks, velocity_options="loop geom", digits=15)


def test_halo_dynamics_equal_serial_full_shell(model64, box, tmp_path):
    """20 NVE steps on 2 ranks in halo mode follow the serial folded run step by step
    (energy, total energy, pressure), and the run ends with the timing line."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    halo, log = _nve(model64, box, tmp_path / "a", 2, "halo yes")
    full, _ = _nve(model64, box, tmp_path / "b", 1, "halo no")
    assert halo.shape == full.shape == (21, 4)
    assert np.ptp(full[:, 1]) > 0.05  # the atoms really move
    np.testing.assert_allclose(halo[:, 1:3], full[:, 1:3], rtol=1e-10)
    np.testing.assert_allclose(halo[:, 3], full[:, 3], rtol=1e-6, atol=1e-6 * np.abs(full[:, 3]).max())
    assert re.search(r"pair_style empp timing \(halo mode, 2 rank\(s\), 2\d call\(s\)\), ms per call: graph \S+, "
                     r"model \S+ \(forward \S+, backward \S+\), halo comm", log)


# ---------------------------------------------------------------------------------- guard
def _pair(distance):
    from ase import Atoms

    return Atoms("OH", positions=[[10, 10, 10], [10 + distance, 10, 10]], cell=[20, 20, 20], pbc=True)


@pytest.mark.parametrize("halo", ["yes", "no"])
def test_guard_stops_on_close_atoms(model64, tmp_path, halo):
    with pytest.raises(RuntimeError) as err:
        lammps_single_point(model64, _pair(0.2), pair_args=f"halo {halo}", workdir=tmp_path)
    assert re.search(r"ERROR.*step 0: atoms (1 and 2|2 and 1) are 0.2 A apart, closer than min_distance 0.3 A",
                     str(err.value))
    # the threshold is a keyword
    res = lammps_single_point(model64, _pair(0.2), pair_args=f"halo {halo} min_distance 0.1", workdir=tmp_path)
    assert np.isfinite(res["energy"])


@pytest.mark.parametrize("halo", ["yes", "no"])
def test_guard_stops_on_non_finite_results(model64, tmp_path, halo):
    """Two atoms on one spot give NaN from the model (zero-length edge): with the
    distance check off, the finite check names the atoms."""
    with pytest.raises(RuntimeError) as err:
        lammps_single_point(model64, _pair(0.0), pair_args=f"halo {halo} min_distance 0", workdir=tmp_path)
    assert re.search(r"ERROR.*step 0: non-finite (energy for|forces on) \d atom\(s\), IDs: 1 2", str(err.value))


def test_guard_names_the_step_of_a_collision(model64, tmp_path):
    """An H atom shot at an O atom: the run stops, with a non-zero exit, at the step
    they come closer than min_distance, instead of carrying on with nonsense."""
    from empp_ff.inference.lammps.inputs import write_data

    write_data(_pair(1.25), tmp_path / "pair.data")  # atom 1 = O, atom 2 = H
    proc = run_lammps_input(tmp_path, f"""
        units metal
        atom_style atomic
        read_data pair.data
        pair_style empp
        pair_coeff * * {model64} H O
        group h id 2
        velocity h set -2000.0 0 0
        timestep 0.00005
        fix 1 all nve
        thermo 1
        run 100
    """, np_ranks=2)
    assert proc.returncode != 0
    m = re.search(r"ERROR.*step (\d+): atoms (\d) and (\d) are (\S+) A apart", proc.stdout)
    assert m, proc.stdout[-2000:]
    # 2000 A/ps = 0.1 A per 0.05 fs step (~200 eV of kinetic energy: the model's forces
    # hardly matter), so 1.25 A becomes 0.25 A at step 10
    assert int(m.group(1)) == 10 and {m.group(2), m.group(3)} == {"1", "2"} and float(m.group(4)) < 0.3
