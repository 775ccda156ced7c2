"""Issue 10, case 4 (ASE side) and the singular cell of case 7: the instability guard of
EMPPCalculator, `empp-ff md` and `empp-ff opt`. (The pair style's guard is tested with
the LAMMPS tests.)"""

from __future__ import annotations

import os
import signal

import ase.io
import numpy as np
import pytest
from ase import Atoms
from click.testing import CliRunner

from empp_ff import EMPPCalculator
from empp_ff.cli import main
from empp_ff.inference.guard import InstabilityError

from conftest import ethanol

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from empp_ff.testing.models import demo_checkpoint

    root = tmp_path_factory.mktemp("guard")
    demo_checkpoint(root / "run" / "checkpoints" / "best.pt", seed=5, num_interactions=1, correlation=2)
    result = CliRunner().invoke(main, ["export", str(root / "run"), "-o", str(root / "m.pt"), "--dtype", "float64"])
    assert result.exit_code == 0, result.output
    return root / "m.pt"


def _cli(args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _overlapping():
    atoms = ethanol()
    atoms.positions[4] = atoms.positions[0]  # an H on top of the C
    return atoms


def test_two_atoms_at_one_position_is_an_error_naming_them(model):
    atoms = _overlapping()
    atoms.calc = EMPPCalculator(model, device="cpu")
    with pytest.raises(InstabilityError, match=r"atoms 0 \(C\) and 4 \(H\) are 0.000 Å apart, closer than "
                                               r"min_distance=0.3 Å") as info:
        atoms.get_potential_energy()
    assert info.value.atoms == [0, 4]


def test_non_finite_forces_are_an_error_naming_the_atoms(model):
    atoms = _overlapping()
    atoms.calc = EMPPCalculator(model, device="cpu", min_distance=None, warn_distance=None)
    with pytest.raises(InstabilityError, match=r"non-finite \(NaN/inf\) forces on atom\(s\) 0 \(C\)"):
        atoms.get_forces()  # before: NaN energy and forces, returned without a word


def test_min_distance_is_configurable(model):
    atoms = ethanol()  # closest pair 0.96 Å (O-H)
    atoms.calc = EMPPCalculator(model, device="cpu", min_distance=1.0, warn_distance=None)
    with pytest.raises(InstabilityError, match="closer than min_distance=1.0"):
        atoms.get_potential_energy()
    atoms.calc = EMPPCalculator(model, device="cpu", min_distance=0.9, warn_distance=None)
    assert np.isfinite(atoms.get_potential_energy())


def test_exploding_nve_md_stops_with_the_step_and_never_writes_a_bad_frame(model, tmp_path):
    start = tmp_path / "ethanol.xyz"
    ase.io.write(start, ethanol())
    traj = tmp_path / "md.traj"
    result = _cli(["md", model, start, "--ensemble", "nve", "--temperature", 3000, "--dt", 2.0, "--steps", 400,
                   "--interval", 1, "--no-progress", "--out", traj, "--device", "cpu"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "MD step" in result.output and "more than max_bond_stretch=0.5 Å" in result.output
    assert "NVE energy drift" not in result.output
    frames = ase.io.read(traj, index=":")
    step = int(result.output.split("MD step ")[1].split()[0])
    assert len(frames) == step  # steps 0 .. step-1: the failing step wrote nothing
    assert f"Stopped; the {step} frame(s) before it are in {traj}." in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ethanol.xyz", "md.traj"]  # no temporary left
    assert all(np.isfinite(f.positions).all() and np.isfinite(f.get_forces()).all() for f in frames)
    bonds = ethanol().get_distance(0, 4), frames[-1].get_distance(0, 4)
    assert abs(bonds[1] - bonds[0]) < 2.0  # stopped early, not 1350 Å apart


def test_bond_stretch_bound_is_configurable(model, tmp_path):
    start = tmp_path / "ethanol.xyz"
    ase.io.write(start, ethanol())
    args = ["md", model, start, "--temperature", 300, "--dt", 0.5, "--steps", 20, "--no-progress",
            "--out", tmp_path / "md.traj", "--device", "cpu"]
    assert _cli(args).exit_code == 0
    tight = _cli(args + ["--max-bond-stretch", 0.0001])
    assert tight.exit_code == 1 and "max_bond_stretch=0.0001" in tight.output


def test_opt_bond_bound_on_request(model, tmp_path):
    start = tmp_path / "ethanol.xyz"
    ase.io.write(start, ethanol())
    result = _cli(["opt", model, start, "--steps", 200, "--max-bond-stretch", 0.05, "--out", tmp_path / "o.xyz",
                   "--device", "cpu"])
    assert result.exit_code == 1 and "optimisation step" in result.output and "max_bond_stretch=0.05" in result.output


def test_md_and_opt_refuse_a_collapsed_initial_structure(model, tmp_path):
    start = tmp_path / "bad.xyz"
    ase.io.write(start, _overlapping())
    for args in (["md", model, start, "--steps", 5, "--no-progress", "--out", tmp_path / "md.traj"],
                 ["opt", model, start, "--steps", 5, "--out", tmp_path / "opt.xyz"]):
        result = _cli(args + ["--device", "cpu"])
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert "initial structure" in result.output and "atoms 0 (C) and 4 (H) are 0.000 Å apart" in result.output


def test_singular_cell_is_a_clear_error(model, tmp_path):
    atoms = Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]], cell=[[3, 0, 0], [3, 0, 0], [0, 0, 3]], pbc=True)
    atoms.calc = EMPPCalculator(model, device="cpu")
    with pytest.raises(ValueError, match=r"the cell .* is singular"):  # was vesin's 'box matrix is not invertible'
        atoms.get_potential_energy()
    path = tmp_path / "singular.extxyz"
    ase.io.write(path, atoms)
    result = _cli(["md", model, path, "--steps", 2, "--no-progress", "--out", tmp_path / "md.traj", "--device", "cpu"])
    assert result.exit_code == 1 and "is singular" in result.output and "Traceback" not in result.output


def _files(directory):
    return {p.name: p.read_bytes() for p in directory.iterdir()}


@pytest.mark.slow
def test_refused_md_and_opt_leave_existing_outputs_byte_identical(model, tmp_path):
    """Issue 19: an unknown element, overlapping atoms or a bad option is refused before any output file
    is opened; the trajectory and log of an earlier run stay byte for byte, and no temporary is left."""
    good, overlapping, nitrogen = tmp_path / "ethanol.xyz", tmp_path / "bad.xyz", tmp_path / "n2.xyz"
    ase.io.write(good, ethanol())
    ase.io.write(overlapping, _overlapping())
    ase.io.write(nitrogen, Atoms("N2", positions=[[0, 0, 0], [1.1, 0, 0]]))
    out = tmp_path / "out"
    out.mkdir()
    md = ["md", model, "--steps", 4, "--interval", 2, "--no-progress", "--device", "cpu",
          "--out", out / "run.traj", "--log", out / "run.log"]
    assert _cli(md[:2] + [good] + md[2:]).exit_code == 0
    opt = ["opt", model, "--steps", 3, "--device", "cpu"]
    for name in ("opt.xyz", "opt.traj"):
        assert _cli(opt + [good, "--out", out / name]).exit_code in (0, 2)
    (out / "run.pdb").write_text("an earlier file\n")
    before = _files(out)
    assert len(before["run.traj"]) > 1000 and before["run.log"].count(b"\n") == 4
    refusals = [
        (md[:2] + [nitrogen] + md[2:], "N (Z=7)"),
        (md[:2] + [overlapping] + md[2:], "MD step 0 (the initial structure): atoms 0 (C) and 4 (H) are 0.000 Å"),
        (md[:2] + [good] + md[2:] + ["--ensemble", "npt"], "npt needs a cell periodic"),
        (md[:2] + [good] + md[2:] + ["--interval", 0], "Invalid value for '--interval'"),
        (md[:2] + [good] + md[2:] + ["--out", out / "run.pdb"], "cannot write an MD trajectory to"),
    ]
    for name in ("opt.xyz", "opt.traj"):
        refusals += [
            (opt + [nitrogen, "--out", out / name], "N (Z=7)"),
            (opt + [overlapping, "--out", out / name], "the initial structure: atoms 0 (C) and 4 (H)"),
            (opt + [good, "--out", out / name, "--fmax", 0], "fmax must be > 0"),
        ]
    refusals.append((opt + [good, "--out", out / "run.pdb2"], "cannot write a structure to"))
    for args, message in refusals:
        result = _cli(args)
        assert result.exit_code != 0 and message in result.output, (args, result.output)
        assert "Traceback" not in result.output and "frame" not in result.output  # no claim of frames kept
        assert _files(out) == before, args  # byte for byte, nothing added (no temporary, no run.pdb2)


# --- issue 28: outputs over inputs, --device, misleading errors, SIGTERM -------------------

def _digests(*paths):
    import hashlib

    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.exists()}


def _one_line_error(result, *needles):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.output.count("Error:") == 1, result.output
    line = [s for s in result.output.splitlines() if s.startswith("Error:")][0]
    for needle in needles:
        assert needle in line, (needle, result.output)


@pytest.fixture
def inputs(model, tmp_path):
    """A private copy of the model, a multi-frame structure file and an earlier trajectory and log."""
    import shutil

    m = tmp_path / "m.pt"
    shutil.copy(model, m)
    structures = tmp_path / "multi.xyz"
    ase.io.write(structures, [ethanol(), ethanol()])
    (tmp_path / "old.traj").write_bytes(b"an earlier trajectory")
    (tmp_path / "old.log").write_text("an earlier log\n")
    return m, structures


@pytest.mark.parametrize("case", ["md-out-structure", "md-log-model", "md-log-out", "md-out-symlink-structure",
                                  "md-out-hardlink-model", "opt-out-structure", "opt-out-model"])
def test_an_output_over_an_input_or_another_output_is_refused(inputs, tmp_path, case):
    m, structures = inputs
    (tmp_path / "link.xyz").symlink_to(structures)
    os.link(m, tmp_path / "hard.pt")
    command, option, path, role = {
        "md-out-structure": ("md", "--out", structures, "the input STRUCTURE"),
        "md-log-model": ("md", "--log", m, "the input MODEL"),
        "md-log-out": ("md", "--log", tmp_path / "old.traj", "the outputs --out"),
        "md-out-symlink-structure": ("md", "--out", tmp_path / "link.xyz", "the input STRUCTURE"),
        "md-out-hardlink-model": ("md", "--out", tmp_path / "hard.pt", "the input MODEL"),
        "opt-out-structure": ("opt", "--out", structures, "the input STRUCTURE"),
        "opt-out-model": ("opt", "--out", m, "the input MODEL"),
    }[case]
    args = [command, m, structures, "--steps", 3, "--device", "cpu", option, path]
    if case == "md-log-out":
        args += ["--out", tmp_path / "old.traj"]
    if command == "md":
        args.append("--no-progress")
    before = _digests(*tmp_path.iterdir())
    _one_line_error(_cli(args), role, option)
    assert _digests(*tmp_path.iterdir()) == before  # every file byte for byte, nothing added


@pytest.mark.parametrize("command", ["md", "opt"])
def test_an_unknown_device_is_a_one_line_error_listing_the_valid_ones(inputs, tmp_path, command):
    m, structures = inputs
    before = _digests(*tmp_path.iterdir())
    result = _cli([command, m, structures, "--steps", 2, "--device", "gpu", "--out", tmp_path / "old.traj"])
    _one_line_error(result, "--device 'gpu' is not a device: use ", "cpu")
    assert _digests(*tmp_path.iterdir()) == before


@pytest.mark.parametrize("case", ["one-atom", "negative-temperature", "negative-friction"])
def test_bad_md_inputs_name_the_real_problem(inputs, tmp_path, case):
    m, structures = inputs
    single = tmp_path / "one.xyz"
    ase.io.write(single, Atoms("C", positions=[[0, 0, 0]]))
    structure, extra, message = {
        "one-atom": (single, [], "MD needs at least 2 atoms, the structure has 1"),
        "negative-temperature": (structures, ["--temperature", -300], "temperature must be >= 0 K, got -300.0 K"),
        "negative-friction": (structures, ["--ensemble", "langevin", "--friction", -1],
                              "the Langevin friction must be >= 0 (1/fs), got -1.0"),
    }[case]
    before = _digests(*tmp_path.iterdir())
    result = _cli(["md", m, structure, "--steps", 5, "--no-progress", "--device", "cpu", "--out",
                   tmp_path / "old.traj", "--log", tmp_path / "old.log", *extra])
    _one_line_error(result, message)
    assert "non-finite" not in result.output  # was: "non-finite (NaN/inf) positions"
    assert _digests(*tmp_path.iterdir()) == before


# A slow, stable run of the random-weight model: the signal lands mid-run.
_SLOW = ["--steps", 10**6, "--dt", 0.001, "--interval", 5, "--no-progress", "--device", "cpu"]


def _frames_written(folder, name, minimum=3):
    from empp_ff.testing.processes import temporaries

    def ready():
        tmps = [p for p in temporaries(folder) if p.name.startswith(f".{name}.")]
        return bool(tmps) and tmps[0].stat().st_size > minimum * 600  # a few frames on disk
    return ready


@pytest.mark.parametrize("signum,fmt", [(signal.SIGTERM, "traj"), (signal.SIGTERM, "xyz"), (signal.SIGINT, "traj")],
                         ids=["sigterm-traj", "sigterm-xyz", "sigint-traj"])
@pytest.mark.slow
def test_a_signalled_md_keeps_its_frames_under_the_target_name(model, tmp_path, signum, fmt):
    from empp_ff.testing.processes import cli_process, stop_when, temporaries

    ase.io.write(tmp_path / "ethanol.xyz", ethanol())
    out = f"md.{fmt}"
    proc = cli_process(["md", model, "ethanol.xyz", *_SLOW, "--out", out, "--log", "md.log"], tmp_path)
    status, stdout, stderr = stop_when(proc, _frames_written(tmp_path, out), signum)
    assert status == 128 + signum, stderr[-3000:]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    frames = ase.io.read(tmp_path / out, index=":")
    assert len(frames) >= 1 and all(len(f) == 9 for f in frames)
    assert lines[0].startswith(f"Error: stopped by {signal.Signals(signum).name} at MD step ")
    assert f"the {len(frames)} frame(s) before it are in {out}" in lines[0]
    assert (tmp_path / "md.log").read_text().count("\n") >= len(frames)
    assert not temporaries(tmp_path)  # no hidden file left


@pytest.mark.slow
def test_a_signalled_opt_keeps_its_path_under_the_target_name(model, tmp_path):
    from empp_ff.testing.processes import cli_process, stop_when, temporaries

    atoms = ethanol()
    atoms.rattle(0.05, seed=1)
    ase.io.write(tmp_path / "ethanol.xyz", atoms)
    proc = cli_process(["opt", model, "ethanol.xyz", "--steps", 10**6, "--fmax", 1e-12, "--optimizer", "FIRE",
                        "--device", "cpu", "--out", "opt.traj", "--min-distance", 0], tmp_path)
    status, _, stderr = stop_when(proc, _frames_written(tmp_path, "opt.traj"))
    assert status == 143 and len(stderr.strip().splitlines()) == 1, stderr[-3000:]
    frames = ase.io.read(tmp_path / "opt.traj", index=":")
    assert stderr.startswith("Error: stopped by SIGTERM at optimisation step ")
    assert f"the {len(frames)} frame(s) before it are in opt.traj" in stderr
    assert not temporaries(tmp_path)


@pytest.mark.slow
def test_the_next_run_removes_what_a_kill_9_left_and_nothing_else(model, tmp_path):
    from empp_ff.testing.processes import cli_process, stop_when, temporaries

    ase.io.write(tmp_path / "ethanol.xyz", ethanol())
    proc = cli_process(["md", model, "ethanol.xyz", *_SLOW, "--out", "md.traj"], tmp_path)
    stop_when(proc, _frames_written(tmp_path, "md.traj"), signal.SIGKILL)
    (leftover,) = temporaries(tmp_path)
    # Not ours to remove: another program's file of the same name pattern, and the temporary of a
    # run still going (this test process is alive).
    from empp_ff._atomic import temporary_prefix

    foreign = tmp_path / ".md.traj.abc123.tmp"
    foreign.write_text("another program's temporary")
    running = tmp_path / (temporary_prefix(tmp_path / "md.traj") + "inprogress.tmp")
    running.write_text("a live run's frames")
    result = _cli(["md", model, tmp_path / "ethanol.xyz", "--steps", 2, "--no-progress", "--device", "cpu",
                   "--out", tmp_path / "md.traj"])
    assert result.exit_code == 0, result.output
    assert not leftover.exists()
    assert foreign.read_text() == "another program's temporary" and running.read_text() == "a live run's frames"
    assert len(ase.io.read(tmp_path / "md.traj", index=":")) == 1
