"""pair_style empp: the bond-stretch guard (``max_bond_stretch``, the ASE calculator's
check, collective on all ranks) and the check of pair_coeff's elements against the
per-type masses (issue 28). The ``min_distance`` / non-finite guard is tested in
``test_lammps_halo.py``.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from empp_ff.testing.lammps import nve_thermo, run_lammps_input

from conftest import LAMMPS_TEST_MARKS

pytestmark = LAMMPS_TEST_MARKS


@pytest.fixture(scope="module")
def ethanol_dir(tmp_path_factory):
    """eth.data: ethanol (types 1 = H, 2 = C, 3 = O; Masses H C O), atom 3 the O and
    atom 4 its H; velocity.txt: 1600 A/ps for atom 4 along the O-H bond, outwards."""
    from ase.build import molecule

    from empp_ff.inference.lammps.inputs import write_data

    d = tmp_path_factory.mktemp("guard")
    atoms = molecule("CH3CH2OH")
    assert atoms.get_chemical_symbols()[2:4] == ["O", "H"]
    assert write_data(atoms, d / "eth.data") == ["H", "C", "O"]
    bond = atoms.positions[3] - atoms.positions[2]
    (d / "velocity.txt").write_text(" ".join(f"{v:.6f}" for v in 1600.0 * bond / np.linalg.norm(bond)))
    return d


def _fly(model, workdir, pair_args, np_ranks=1, boundary="s s s", steps=20):
    """Atom 4 (H) shot away from its O at 0.08 A per step: the O-H bond (0.971 A) is
    stretched by 0.48 A at step 6 and 0.56 A at step 7 (~130 eV of kinetic energy: the
    model's forces hardly matter)."""
    velocity = (workdir / "velocity.txt").read_text()
    return run_lammps_input(workdir, f"""
        units metal
        atom_style atomic
        boundary {boundary}
        read_data eth.data
        pair_style empp {pair_args}
        pair_coeff * * {model} H C O
        neighbor 1.0 bin
        group h id 4
        velocity h set {velocity}
        timestep 0.00005
        fix 1 all nve
        thermo 1
        run {steps}
    """, np_ranks=np_ranks)


# ---------------------------------------------------------------------------------- bond stretch
@pytest.mark.parametrize("np_ranks", [1, 2])
@pytest.mark.parametrize("halo", ["yes", "no"])
def test_stretched_bond_stops_the_run(model64, ethanol_dir, np_ranks, halo):
    """The run stops, on every rank (no hang with 2 ranks), at the step the O-H bond
    has stretched by more than max_bond_stretch, naming both atoms and the lengths."""
    proc = _fly(model64, ethanol_dir, f"halo {halo} max_bond_stretch 0.5", np_ranks)
    out = proc.stdout
    assert proc.returncode != 0, out[-2000:]
    assert "max_bond_stretch 0.5 A: 8 bond(s) among 9 atoms in the reference structure (step 0)" in out
    error = [line for line in out.splitlines() if line.startswith("ERROR")]
    assert len(error) == 1, out[-2000:]  # one message, from rank 0 (error->all)
    m = re.search(r"step (\d+): the bond between atoms 3 \(O\) and 4 \(H\) changed from (\S+) A to (\S+) A, "
                  r"more than max_bond_stretch 0.5 A", error[0])
    assert m, error[0]
    assert int(m.group(1)) == 7 and m.group(2) == "0.971" and 1.50 < float(m.group(3)) < 1.56
    # the threshold is the keyword's, and 0 switches the check off
    for args in ("max_bond_stretch 2.0", "max_bond_stretch 0"):
        proc = _fly(model64, ethanol_dir, f"halo {halo} {args}", np_ranks)
        assert proc.returncode == 0 and "ERROR" not in proc.stdout, proc.stdout[-2000:]


@pytest.mark.parametrize("new_pair_style", [False, True])
def test_reference_is_the_first_configuration_seen(model64, ethanol_dir, new_pair_style):
    """The reference survives between runs: the O-H bond stretched by 0.15 A between two
    runs counts (the run stops at step 5, 0.15 + 5 x 0.08 A); a new pair_style command
    takes a new reference (still a bond at 1.121 A, < 1.2 x (0.66 + 0.31); then step 7,
    as from the start)."""
    u = np.array([float(v) for v in (ethanol_dir / "velocity.txt").read_text().split()]) / 1600.0
    again = f"pair_style empp max_bond_stretch 0.5\npair_coeff * * {model64} H C O" if new_pair_style else ""
    proc = run_lammps_input(ethanol_dir, f"""
        units metal
        atom_style atomic
        boundary s s s
        read_data eth.data
        pair_style empp max_bond_stretch 0.5
        pair_coeff * * {model64} H C O
        neighbor 1.0 bin
        run 0
        group h id 4
        displace_atoms h move {' '.join(f"{0.15 * v:.6f}" for v in u)}
        {again}
        velocity h set {' '.join(f"{1600.0 * v:.6f}" for v in u)}
        timestep 0.00005
        fix 1 all nve
        run 20
    """)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert proc.stdout.count("8 bond(s) among 9 atoms in the reference structure") == 1 + new_pair_style
    m = re.search(r"ERROR: .*step (\d+): the bond between atoms 3 \(O\) and 4 \(H\) changed from (\S+) A", proc.stdout)
    assert m, proc.stdout[-2000:]
    assert (int(m.group(1)), m.group(2)) == ((7, "1.121") if new_pair_style else (5, "0.971"))


@pytest.mark.parametrize("halo", ["yes", "no"])
def test_bond_partner_beyond_the_ghost_shell(model64, tmp_path, halo):
    """An O-H pair split across 2 ranks, the H flown far beyond the O owner's ghost shell
    (4.5 A in halo mode, 8 A in full-shell mode): the bond is still measured exactly,
    as with 1 rank."""
    from ase import Atoms

    from empp_ff.inference.lammps.inputs import write_data

    atoms = Atoms("OH", positions=[[25.0, 10.0, 10.0], [25.97, 10.0, 10.0]], cell=[60.0, 20.0, 20.0], pbc=True)
    write_data(atoms, tmp_path / "oh.data", ["H", "O"])
    errors = []
    for np_ranks in (1, 2):
        proc = run_lammps_input(tmp_path, f"""
            units metal
            atom_style atomic
            boundary f f f
            processors * 1 1
            read_data oh.data
            pair_style empp halo {halo} max_bond_stretch 15.5
            pair_coeff * * {model64} H O
            neighbor 1.0 bin
            group h id 2
            velocity h set 2000 0 0
            timestep 0.0005
            fix 1 all nve
            run 30
        """, np_ranks=np_ranks)  # the H moves 1 A per step, from rank 0's half into rank 1's
        errors.append(next((line for line in proc.stdout.splitlines() if line.startswith("ERROR")), proc.stdout))
    m = re.search(r"step 16: the bond between atoms 1 \(O\) and 2 \(H\) changed from 0.970 A to (\S+) A", errors[1])
    assert m and 16.9 < float(m.group(1)) < 17.0, errors[1]
    assert errors[0].split("(/")[0] == errors[1].split("(/")[0]


def test_same_bonds_as_the_calculator(model64, tmp_path):
    """The reference bonds are the Python guard's (1.2 x the sum of covalent radii)."""
    from pathlib import Path

    from ase.io import read

    from empp_ff.inference.guard import InstabilityGuard
    from empp_ff.inference.lammps.inputs import write_data

    atoms = read(Path(__file__).resolve().parents[1] / "md_examples" / "aspirin.xyz")
    guard = InstabilityGuard(max_bond_stretch=0.5)
    guard.check_bonds(atoms.numbers, atoms.positions, periodic=False)
    elements = write_data(atoms, tmp_path / "a.data")
    proc = run_lammps_input(tmp_path, f"""
        units metal
        atom_style atomic
        boundary s s s
        read_data a.data
        pair_style empp max_bond_stretch 0.5
        pair_coeff * * {model64} {' '.join(elements)}
        run 0
    """)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert f": {len(guard._bonds)} bond(s) among {len(atoms)} atoms in the reference" in proc.stdout


@pytest.mark.parametrize("np_ranks", [1, 2])
def test_normal_md_with_the_guard_is_unchanged(model64, ethanol_dir, np_ranks, tmp_path):
    """300 K NVE of the molecule: with the guard on, the same trajectory to the last
    digit as without it, and no stop."""
    from ase.build import molecule

    rows = {}
    for args in ("max_bond_stretch 0.5", "max_bond_stretch 0"):
        (tmp_path / args[-1]).mkdir()
        rows[args], log = nve_thermo(model64, molecule("CH3CH2OH"), tmp_path / args[-1], dt_fs=0.25, steps=20,
                                     every=1, columns=("pe", "etotal"), pair_args=args, np_ranks=np_ranks,
                                     velocity_options="loop geom", digits=17, boundary="s s s")
        assert ("8 bond(s) among 9 atoms" in log) == (args == "max_bond_stretch 0.5")
    assert rows["max_bond_stretch 0.5"].shape == (21, 3)
    assert np.ptp(rows["max_bond_stretch 0.5"][:, 1]) > 1e-3  # the atoms really move
    np.testing.assert_array_equal(rows["max_bond_stretch 0.5"], rows["max_bond_stretch 0"])


def test_bond_guard_is_off_in_periodic_boxes(model64, ethanol_dir):
    """As in the calculator, which skips structures with a periodic direction: the
    guard watches molecules only, and says so instead of silently doing nothing."""
    proc = _fly(model64, ethanol_dir, "max_bond_stretch 0.5", boundary="p p p")
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert re.search(r"WARNING: pair_style empp: max_bond_stretch 0.5 is inactive in this box: .* molecules only",
                     proc.stdout)
    assert "bond(s) among" not in proc.stdout


def test_bad_max_bond_stretch(model64, ethanol_dir):
    proc = _fly(model64, ethanol_dir, "max_bond_stretch -1")
    assert re.search(r"ERROR: pair_style empp: max_bond_stretch must be >= 0 Angstrom", proc.stdout), proc.stdout


# ---------------------------------------------------------------------------------- masses
def _single_point(model, workdir, elements, extra="", pair_args=""):
    return run_lammps_input(workdir, f"""
        units metal
        atom_style atomic
        boundary s s s
        read_data eth.data
        pair_style empp {pair_args}
        pair_coeff * * {model} {elements}
        {extra}
        run 0
    """)


@pytest.mark.parametrize("elements, extra, error", [
    # the case: Masses say H C O (types 1, 2, 3), pair_coeff says C H O
    ("C H O", "", r"atom type 1 is C by pair_coeff, but its mass 1.008 is that of H \(1.008\), not of C \(12.011\)"
                  r": the element names do not follow the atom types \(the masses say: H C O\)"),
    ("H O C", "", r"atom type 2 is O by pair_coeff, but its mass 12.011 is that of C"),
    # a mass set after pair_coeff is checked when the run starts
    ("H C O", "mass 3 14.007", r"atom type 3 is O by pair_coeff, but its mass 14.007 is that of N \(14.007\)"),
])
def test_elements_against_masses_refused(model64, ethanol_dir, elements, extra, error):
    proc = _single_point(model64, ethanol_dir, elements, extra)
    assert proc.returncode != 0, proc.stdout[-2000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("ERROR"))
    assert re.search(error, line), line
    assert "check_masses no" in line


@pytest.mark.parametrize("elements, extra, pair_args, warning", [
    ("H C O", "", "", None),  # the data file's masses
    ("H C O", "mass 1 1.0\nmass 2 12.0\nmass 3 16.0", "", None),  # rounded masses
    ("H C O", "mass 1 2.014", "", r"atom type 1 \(H\) has mass 2.014, not the standard atomic mass of H"),  # D
    ("C H O", "", "check_masses no", None),  # asked for
])
def test_elements_against_masses_accepted(model64, ethanol_dir, elements, extra, pair_args, warning):
    proc = _single_point(model64, ethanol_dir, elements, extra, pair_args)
    assert proc.returncode == 0 and "ERROR" not in proc.stdout, proc.stdout[-2000:]
    warnings = [line for line in proc.stdout.splitlines() if "WARNING" in line and "mass" in line]
    if warning is None:
        assert not warnings, warnings
    else:
        assert len(warnings) == 1 and re.search(warning, warnings[0]), warnings
