"""`empp-ff stability`: NVT runs from reference frames, collapse by bond deviation, h(r).

The physics is checked with analytic potentials that obey the model-file contract
(forces = -dE/dx of harmonic springs, or of a repulsion that blows the molecule
apart); the command with a tiny exported model and a synthetic reference."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from empp_ff.cli import main
from empp_ff.inference.stability import StabilitySettings, distance_counts, hr_error, reference_frames, run_stability

from conftest import ETHANOL_POSITIONS

NUMBERS = np.array([6, 6, 8, 1, 1, 1, 1, 1, 1])
METADATA = {"species": [1, 6, 8], "dtype": "float64", "r_max": 5.0}
CPU = torch.device("cpu")


def _reference(n_frames=40, noise=0.03, seed=3):
    rng = np.random.default_rng(seed)
    return ETHANOL_POSITIONS[None] + noise * rng.standard_normal((n_frames, *ETHANOL_POSITIONS.shape))


class Springs:
    """An elastic network: harmonic springs between all pairs of ethanol's atoms (rest
    lengths those of the reference geometry x ``stretch``), called like a model file:
    (positions, numbers, edge_index, shifts, n_local, virial) -> {"forces"}. Springs act
    within each copy (9 atoms) only, as the model's edges do."""

    def __init__(self, k=30.0, stretch=1.0):
        i, j = np.triu_indices(9, k=1)
        lengths = np.linalg.norm(ETHANOL_POSITIONS[i] - ETHANOL_POSITIONS[j], axis=-1)
        self.i, self.j = torch.as_tensor(i), torch.as_tensor(j)
        self.rest, self.k = torch.as_tensor(lengths) * stretch, k
        self.calls = 0

    def energy(self, pos):
        x = pos.reshape(-1, 9, 3)
        d = (x[:, self.i] - x[:, self.j]).norm(dim=-1)
        return 0.5 * self.k * ((d - self.rest) ** 2).sum()

    def __call__(self, positions, numbers, edge_index, shifts, n_local, virial):
        assert positions.shape[0] % 9 == 0 and edge_index.max() < positions.shape[0]
        same_copy = (edge_index[0] // 9) == (edge_index[1] // 9)
        assert bool(same_copy.all()), "an edge joins two copies of the molecule"
        self.calls += 1
        pos = positions.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.energy(pos), pos)
        return {"forces": -grad}


class Explosion(Springs):
    """Every pair repels: the molecule flies apart within a few hundred fs."""

    def energy(self, pos):
        x = pos.reshape(-1, 9, 3)
        d = torch.cdist(x, x) + torch.eye(9)
        return (2.0 / d).triu(1).sum()


def _settings(**kw):
    return StabilitySettings(**{"temperature": 500.0, "dt_fs": 0.5, "time_ps": 0.5, "runs": 3, "seed": 1, **kw})


@pytest.mark.slow
def test_stable_molecule_stays_intact_and_is_held_at_temperature():
    frames = _reference()
    model = Springs()
    report, trace = run_stability(model, METADATA, NUMBERS, frames, _settings(time_ps=2.0), CPU)
    assert report["collapsed"] == [False] * 3 and report["stable_ps"] == [2.0] * 3
    assert report["stable_ps_median"] == 2.0 and report["n_collapsed"] == 0
    assert model.calls == 4000 + 1  # one batched call per step (all three runs) and the start
    # Langevin NVT: the kinetic temperature averages to the target (9 atoms, 3 runs, 2 ps: ~10 %)
    assert report["mean_temperature_K"] == pytest.approx(500.0, rel=0.15)
    # the right model against its own geometry: only the sampling noise of 0.02 Å bins (~0.3)
    assert 0 < report["hr_mae"] < 0.5 and all(0 < e < 1 for e in report["hr_mae_per_run"])
    assert len(trace.check_times_ps) == 200 and np.isclose(trace.hr_md.sum() * 10 / 500, 1.0)


def test_h_r_error_sees_a_model_with_wrong_bond_lengths():
    frames = _reference()
    right, _ = run_stability(Springs(), METADATA, NUMBERS, frames, _settings(), CPU)
    wrong, _ = run_stability(Springs(stretch=1.08), METADATA, NUMBERS, frames, _settings(), CPU)
    assert not any(wrong["collapsed"])  # 8 % longer: bonds stay within 0.5 Å, not a collapse
    assert wrong["hr_mae"] > 2 * right["hr_mae"]


def test_exploding_molecule_collapses_and_is_timed():
    frames = _reference()
    report, trace = run_stability(Explosion(), METADATA, NUMBERS, frames, _settings(time_ps=2.0), CPU)
    assert report["collapsed"] == [True] * 3 and report["n_collapsed"] == 3
    assert all(0 < t < 2.0 for t in report["stable_ps"])
    # the collapse is timed at the first check past 0.5 Å deviation
    for k, t in enumerate(report["stable_ps"]):
        at = trace.check_times_ps.index(t)
        assert trace.max_deviation[k][at] > 0.5 and all(d <= 0.5 for d in trace.max_deviation[k][:at])
        assert all(math.isnan(d) for d in trace.max_deviation[k][at + 1:])


def test_hr_error_is_an_area_between_normalised_histograms():
    frames = _reference()
    counts = distance_counts(frames, 500, 10.0)
    assert counts.sum() == len(frames) * 36
    assert hr_error(counts, counts, 10.0) == 0.0
    far = distance_counts(frames * 3.0, 500, 10.0)  # a molecule three times the size: little overlap
    assert 1.5 < hr_error(far, counts, 10.0) <= 2.0
    assert math.isnan(hr_error(np.zeros(500), counts, 10.0))


@pytest.mark.parametrize("kw, message", [
    ({"temperature": -300}, "--temperature must be > 0"),
    ({"dt_fs": 0}, "--dt must be > 0"),
    ({"time_ps": float("nan")}, "--time must be > 0"),
    ({"runs": 0}, "--runs must be >= 1"),
    ({"friction": -1}, "--friction must be > 0"),
])
def test_bad_settings_are_named(kw, message):
    with pytest.raises(ValueError, match=message):
        _settings(**kw).validate()


# ----------------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from empp_ff.testing.models import make_model

    return make_model(tmp_path_factory.mktemp("stability") / "tiny.pt", perturb=0.0, r_max=3.5)


def _write_reference(path, frames, numbers=NUMBERS):
    from ase import Atoms
    from ase.io import write

    write(str(path), [Atoms(numbers=numbers, positions=f) for f in frames], format="extxyz")
    return path


@pytest.mark.slow
def test_command_prints_one_json_document_and_writes_the_plot(tiny_model, tmp_path):
    ref = _write_reference(tmp_path / "ref.xyz", _reference(8))
    plot = tmp_path / "stability.png"
    result = CliRunner().invoke(main, ["stability", str(tiny_model), str(ref), "--time", "0.05", "--runs", "2",
                                       "--json", "--no-progress", "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    for key in ("stable_ps", "stable_ps_median", "collapsed", "hr_mae"):
        assert key in doc
    assert len(doc["stable_ps"]) == 2 and len(doc["collapsed"]) == 2
    assert all(0 < t <= 0.05 for t in doc["stable_ps"]) and doc["start_frames"] == [0, 7]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_a_signalled_stability_run_ends_in_one_line_and_writes_nothing(tiny_model, tmp_path):
    import signal

    from empp_ff.testing.processes import catches, cli_process, stop_when, temporaries

    ref = _write_reference(tmp_path / "ref.xyz", _reference(8))
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = cli_process(["stability", tiny_model, ref, "--time", "500", "--runs", "2", "--no-progress", "--json",
                        "--plot", "stability.png"], tmp_path)
    status, stdout, stderr = stop_when(proc, lambda: catches(proc) and time.sleep(2) is None, signal.SIGTERM)
    assert status == 143 and stdout == "", stderr[-2000:]
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1] == "Error: stopped by SIGTERM", stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before and not temporaries(tmp_path)


def test_command_refuses_bad_input_in_one_line(tiny_model, tmp_path):
    ref = _write_reference(tmp_path / "ref.xyz", _reference(4))
    other = _write_reference(tmp_path / "mixed.xyz", _reference(2))
    with other.open("a") as f:  # a second molecule appended: not frames of one molecule
        f.write("2\n\nH 0 0 0\nH 0 0 0.74\n")
    model_bytes = tiny_model.read_bytes()
    cases = [
        (["--plot", str(tiny_model)], "is the input MODEL"),
        (["--temperature", "-300"], "--temperature must be > 0"),
        (["--runs", "0"], "--runs must be >= 1"),
    ]
    for extra, message in cases:
        result = CliRunner().invoke(main, ["stability", str(tiny_model), str(ref), "--no-progress", *extra])
        assert result.exit_code != 0 and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    result = CliRunner().invoke(main, ["stability", str(tiny_model), str(other), "--no-progress"])
    assert result.exit_code != 0 and "another molecule" in result.output
    assert tiny_model.read_bytes() == model_bytes


def test_reference_reader_rejects_periodic_frames(tmp_path):
    from ase import Atoms
    from ase.io import write

    path = tmp_path / "box.xyz"
    write(str(path), Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]], cell=[5, 5, 5], pbc=True), format="extxyz")
    with pytest.raises(ValueError, match="periodic"):
        reference_frames(path)


def test_plot_is_written_atomically_as_png(tmp_path):
    from empp_ff.inference.stability_plot import stability_plot

    frames = _reference()
    report, trace = run_stability(Explosion(), METADATA, NUMBERS, frames, _settings(time_ps=0.2, runs=2), CPU)
    path = tmp_path / "s.png"
    stability_plot(trace, report, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["s.png"]  # no temporary left
