"""MD and optimisation drivers, and the CLI end to end (export -> info -> md -> opt)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase import Atoms
from click.testing import CliRunner

from empp_ff.calculator import EMPPCalculator
from empp_ff.cli import main
from empp_ff.inference.md import energy_drift, optimize, run_md
from empp_ff.testing.models import demo_checkpoint

from conftest import ethanol

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("mdcli")
    # 1 interaction, correlation 2: the cheapest MACE, so 2000 MD steps stay fast
    demo_checkpoint(root / "run" / "checkpoints" / "best.pt", ema=True, seed=5,
                    num_interactions=1, correlation=2)
    result = CliRunner().invoke(main, ["export", str(root / "run"), "-o", str(root / "model.pt"), "--dtype", "float64"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    return root


def test_energy_drift_fit():
    t = np.arange(0, 1000.0, 0.5)  # fs
    e = 2.0e-3 * t / 1000.0 * 3 + 0.01 * np.sin(t)  # 2e-3 eV/atom/ps for 3 atoms, plus wiggle
    assert energy_drift(t, e, 3) == pytest.approx(2e-3, rel=0.05)


def test_optimisation_converges(workdir):
    calc = EMPPCalculator(workdir / "model.pt", device="cpu")
    atoms = ethanol()
    result = optimize(atoms, calc, fmax=0.01, optimizer="BFGS", steps=300, logfile=None)
    assert result.converged and result.final_fmax < 0.01
    assert result.final_energy <= result.initial_energy
    assert np.sqrt((atoms.get_forces() ** 2).sum(axis=1)).max() < 0.01


@pytest.mark.slow
def test_nve_energy_conservation(workdir):
    """2000 velocity-Verlet steps of 0.5 fs (1 ps) at 300 K, float64 model.

    Velocity Verlet is symplectic: the total energy oscillates around a conserved
    shadow Hamiltonian with an amplitude O((omega dt)^2 kT) and has no secular drift
    beyond round-off. A real error (forces not equal to -grad E, a discontinuity at
    the cutoff, a stale neighbour list) shows up as a drift of 1e-3..1e-1
    eV/atom/ps. We assert |drift| < 1e-4 eV/atom/ps and fluctuations
    < 2e-3 eV/atom (under 0.1 kT per atom at 300 K).
    """
    calc = EMPPCalculator(workdir / "model.pt", device="cpu", min_distance=None)
    atoms = ethanol()
    optimize(atoms, calc, fmax=0.05, steps=200, logfile=None)  # start near a minimum
    result = run_md(atoms, calc, steps=2000, dt_fs=0.5, temperature=300.0, ensemble="nve",
                    seed=1, progress=False)
    assert len(result.times_fs) == 2001
    assert abs(result.drift_ev_per_atom_per_ps) < 1e-4, result.summary()
    assert result.max_abs_fluctuation_ev_per_atom < 2e-3, result.summary()
    assert 50.0 < np.mean(result.temperature) < 600.0


@pytest.mark.parametrize("ensemble", ["langevin", "nvt"])
def test_thermostats_run(workdir, ensemble):
    calc = EMPPCalculator(workdir / "model.pt", device="cpu", min_distance=None)
    result = run_md(ethanol(), calc, steps=20, dt_fs=0.5, temperature=300.0, ensemble=ensemble,
                    friction=0.02, seed=0, progress=False)
    assert len(result.temperature) == 21 and result.drift_ev_per_atom_per_ps is None


def test_npt(workdir):
    calc = EMPPCalculator(workdir / "model.pt", device="cpu", min_distance=None)
    with pytest.raises(ValueError, match="npt needs a cell periodic"):
        run_md(ethanol(), calc, steps=2, ensemble="npt", progress=False)
    box = Atoms("COH", positions=[[0.1, 0.2, 0.0], [1.45, 0.3, 0.25], [0.4, 1.6, 1.7]],
                cell=np.eye(3) * 3.2, pbc=True).repeat((2, 2, 2))
    result = run_md(box, calc, steps=5, dt_fs=0.5, temperature=300.0, ensemble="npt", progress=False)
    assert len(result.potential_energy) == 6 and np.all(np.isfinite(result.potential_energy))


def test_cli_end_to_end(workdir):
    runner = CliRunner()
    model = str(workdir / "model.pt")
    info = runner.invoke(main, ["info", model])
    assert info.exit_code == 0, info.output
    assert "H(1) C(6) O(8)" in info.output and "float64" in info.output and "EMA" in info.output
    assert "architecture" in info.output and "MACE " in info.output
    assert "Å in halo mode (halo_version 1" in info.output
    meta = json.loads(runner.invoke(main, ["info", model, "--json"]).output)
    assert meta["format_version"] == 1 and meta["used_ema"] is True

    structure = workdir / "ethanol.xyz"
    ethanol().write(structure)
    traj, log = workdir / "md.xyz", workdir / "md.log"
    md = runner.invoke(main, ["md", model, str(structure), "--steps", "10", "--dt", "0.5",
                              "--temperature", "200", "--ensemble", "nve", "--out", str(traj),
                              "--interval", "5", "--log", str(log), "--device", "cpu", "--no-progress"])
    assert md.exit_code == 0, md.output
    assert "NVE energy drift" in md.output
    from ase.io import read

    frames = read(traj, index=":")
    assert len(frames) == 3 and "energy" in frames[-1].calc.results
    assert len(log.read_text().splitlines()) == 4  # header + steps 0, 5, 10

    lv = runner.invoke(main, ["md", model, str(structure), "--steps", "3", "--ensemble", "langevin",
                              "--out", str(workdir / "lv.traj"), "--no-progress"])
    assert lv.exit_code == 0, lv.output
    npt = runner.invoke(main, ["md", model, str(structure), "--steps", "3", "--ensemble", "npt",
                               "--out", str(workdir / "x.traj"), "--no-progress"])
    assert npt.exit_code != 0 and "npt needs a cell periodic" in npt.output

    out = workdir / "opt.xyz"
    opt = runner.invoke(main, ["opt", model, str(structure), "--fmax", "0.05", "--out", str(out),
                               "--optimizer", "FIRE", "--steps", "500", "--json"])
    assert opt.exit_code == 0, opt.output
    res = json.loads(opt.output.strip().splitlines()[-1])
    assert res["converged"] and res["final_fmax"] < 0.05
    assert len(read(out)) == 9


def test_cli_errors(workdir, tmp_path):
    runner = CliRunner()
    model = str(workdir / "model.pt")
    r = runner.invoke(main, ["md", model, str(tmp_path / "nope.xyz"), "--steps", "1"])
    assert r.exit_code != 0 and "structure file not found" in r.output
    structure = tmp_path / "w.xyz"
    Atoms("OH", positions=[[0, 0, 0], [0.97, 0, 0]]).write(structure)
    r = runner.invoke(main, ["opt", str(tmp_path / "nope.pt"), str(structure)])
    assert r.exit_code != 0 and "model file not found" in r.output
    r = runner.invoke(main, ["info", str(structure)])
    assert r.exit_code != 0 and "not an empp-ff model file" in r.output
    r = runner.invoke(main, ["export", str(tmp_path / "norun"), "-o", str(tmp_path / "m.pt")])
    assert r.exit_code != 0 and "not found" in r.output
    r = runner.invoke(main, ["export", str(workdir / "run"), "-o", str(tmp_path / "m.pt"), "--no-ema"])
    assert r.exit_code == 0 and "raw weights" in r.output
    nitrogen = tmp_path / "n2.xyz"
    Atoms("N2", positions=[[0, 0, 0], [1.1, 0, 0]]).write(nitrogen)
    r = runner.invoke(main, ["opt", model, str(nitrogen)])
    assert r.exit_code != 0 and "N (Z=7)" in r.output
