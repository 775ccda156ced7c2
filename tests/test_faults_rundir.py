"""Issue 10, run-directory cases: one training per run directory (case 5), stale splits
and stores (case 6), the run-directory items of case 10 and the outputs of case 11."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from empp_ff.cli import main
from empp_ff.data.store import StructureStore

ROOT = Path(__file__).resolve().parents[1]


def _train(overrides, config=None):
    args = ["train"] + ([str(config)] if config else [])
    for kv in overrides:
        args += ["--set", str(kv)]
    return CliRunner().invoke(main, args)


def _ok(result):
    assert result.exit_code == 0, result.output
    return result.output


def _failed(result, *needles):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output, (needle, result.output)
    return result.output


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished 2-epoch tiny run (reused by the tests that only read it)."""
    from conftest import TINY_MODEL

    root = tmp_path_factory.mktemp("finished")
    sets = {"run_dir": root / "run", "data.n_train": 16, "data.n_val": 4, "data.n_test": 8,
            "train.max_epochs": 2, "train.batch_size": 4, "train.progress": False, "train.tensorboard": False,
            "empp.enabled": False, **{f"model.{k}": v for k, v in TINY_MODEL.items()}}
    overrides = [f"{k}={v}" for k, v in sets.items()]
    _ok(_train(overrides))
    return root / "run", overrides


# --- case 5: a lock per run directory ---------------------------------------------------

_HOLD = "import sys, time; from empp_ff.train.rundir import RunLock; RunLock(sys.argv[1]).acquire(); " \
        "print('locked', flush=True); time.sleep(600)"


@pytest.mark.slow
def test_second_training_on_a_busy_run_dir_is_refused_and_a_dead_lock_is_taken_over(tmp_path, tiny_train_overrides):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        _failed(_train(tiny_train_overrides(run_dir, epochs=1)),
                f"{run_dir} is in use by another training (pid {holder.pid}", "choose another run_dir")
        assert not (run_dir / "config.yaml").exists()  # nothing of the busy run was touched
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert (run_dir / ".lock").exists()  # the killed holder left its lock file: stale now
    output = _ok(_train(tiny_train_overrides(run_dir, epochs=1)))
    assert "took over the lock of a training that no longer runs" in output
    assert not (run_dir / ".lock").exists()  # released at the end


@pytest.mark.slow
def test_lock_is_released_on_an_error(tmp_path, tiny_train_overrides):
    run_dir = tmp_path / "run"
    _failed(_train(tiny_train_overrides(run_dir, **{"data.n_train": 5000})), "split sizes exceed")
    assert not (run_dir / ".lock").exists()
    _ok(_train(tiny_train_overrides(run_dir, epochs=1)))


# --- case 6: stale splits and stores ------------------------------------------------------

def _md17(path, n, shift=0.0):
    from empp_ff.data.demo import demo_data_path

    with np.load(demo_data_path()) as d:
        arrays = {k: d[k] for k in d.files}
    arrays["R"], arrays["E"], arrays["F"] = arrays["R"][:n] + shift, arrays["E"][:n], arrays["F"][:n]
    np.savez(path, **arrays)
    return path


@pytest.mark.slow
def test_splits_follow_the_config_after_a_run_killed_before_its_first_checkpoint(tmp_path, tiny_train_overrides):
    run_dir = tmp_path / "run"
    _ok(_train(tiny_train_overrides(run_dir, epochs=1)))
    shutil.rmtree(run_dir / "checkpoints")  # as a run killed before its first checkpoint leaves it
    (run_dir / "test_metrics.json").unlink()
    output = _ok(_train(tiny_train_overrides(run_dir, epochs=1, **{"data.n_train": 12})))
    assert "splits.json is stale (the split config changed (n_train: 16 -> 12))" in output
    splits = json.loads((run_dir / "splits.json").read_text())
    assert len(splits["train"]) == 12
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["n_train"] == 12


@pytest.mark.slow
def test_a_data_file_fixed_in_place_is_converted_again(tmp_path, tiny_train_overrides):
    data, run_dir = _md17(tmp_path / "mol.npz", 40), tmp_path / "run"
    overrides = tiny_train_overrides(run_dir, epochs=1, **{"data.path": data})
    _ok(_train(overrides))
    shutil.rmtree(run_dir / "checkpoints")
    _md17(data, 36, shift=0.01)  # the source fixed in place
    output = _ok(_train(overrides))
    assert "mol.h5 is stale" in output and "changed since it was converted" in output
    with StructureStore(run_dir / "data" / "mol.h5") as store:
        assert len(store) == 36
    assert "splits.json is stale" in output


@pytest.mark.slow
def test_changed_data_under_a_checkpoint_is_refused(tmp_path, tiny_train_overrides):
    data, run_dir = _md17(tmp_path / "mol.npz", 40), tmp_path / "run"
    _ok(_train(tiny_train_overrides(run_dir, epochs=1, **{"data.path": data})))
    _md17(data, 40, shift=0.01)
    _failed(_train(tiny_train_overrides(run_dir, epochs=2, **{"data.path": data})),
            "changed since it was converted", "restore the data file, or start a fresh run_dir")


# --- case 10 ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_no_test_split_is_reported_as_such(tmp_path, tiny_train_overrides):
    output = _ok(_train(tiny_train_overrides(tmp_path / "run", epochs=1, **{"data.n_test": 0})))
    assert "no test split (data.n_test = 0), nothing to evaluate" in output
    assert "self-supervised" not in output


@pytest.mark.slow
def test_run_dir_relative_absolute_or_moved_is_the_same_run(tmp_path, monkeypatch, finished):
    run_dir, overrides = finished
    moved = tmp_path / "moved"
    shutil.copytree(run_dir, moved)
    monkeypatch.chdir(tmp_path)
    relative = [kv for kv in overrides if not kv.startswith("run_dir=")] + ["run_dir=moved"]
    assert "is a finished run" in _ok(_train(relative))
    longer = [kv if not kv.startswith("train.max_epochs=") else "train.max_epochs=3" for kv in relative]
    output = _ok(_train(longer[:-1] + [f"run_dir={moved.resolve()}"]))
    assert f"resuming {moved.resolve()} after epoch 2" in output


def test_a_finished_run_is_reported_not_re_evaluated(tmp_path, monkeypatch, finished):
    run_dir, overrides = finished
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    before = (copy / "test_metrics.json").read_text()
    log = tmp_path / "writes.log"
    monkeypatch.setenv("EMPP_FF_FAULT_LOG", str(log))
    output = _ok(_train([kv for kv in overrides if not kv.startswith("run_dir=")] + [f"run_dir={copy}"]))
    assert "is a finished run (2 epochs); results from test_metrics.json" in output
    assert "Test set" in output and "forces MAE" in output  # the same table as at the end of training
    written = log.read_text().split()
    assert not any(w.endswith(("test_metrics.json", ".png", ".pt")) for w in written), written
    assert (copy / "test_metrics.json").read_text() == before


def test_finetuning_into_a_finished_run_dir_says_finished_not_interrupted(tmp_path, finished):
    run_dir, overrides = finished
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    rest = [kv for kv in overrides if not kv.startswith("run_dir=")]
    output = _failed(_train(rest + [f"run_dir={copy}", f"finetune_from={tmp_path / 'pre'}"]),
                     "holds a finished run (2 epochs) with a different config (finetune_from: None ->",
                     "Choose another run_dir")
    assert "interrupted" not in output


def test_readme_finetune_line_uses_its_own_run_dir():
    readme = (ROOT / "README.md").read_text()
    line = next(ln for ln in readme.splitlines() if "finetune_from=" in ln and ln.startswith("empp-ff train"))
    assert "aspirin.yaml" in line and "run_dir=" in line and "run_dir=runs/aspirin " not in line + " "


def test_pretraining_without_a_config_does_not_inherit_the_demo_splits():
    from empp_ff.train.config import load_config

    cfg = load_config(None, ["task=pretrain", "empp.enabled=true", "data.path=unlabelled.h5", "run_dir=runs/pre"])
    assert (cfg.data.n_train, cfg.data.n_val, cfg.data.n_test) == (None, 0.05, 0)
    from empp_ff.data.splits import make_splits

    sizes = {k: len(v) for k, v in make_splits(558, cfg.data.n_train, cfg.data.n_val, cfg.data.n_test).items()}
    assert sizes == {"train": 530, "val": 28, "test": 0}
    demo = load_config(None, [])  # the demo itself keeps its sizes
    assert (demo.data.n_train, demo.data.n_val, demo.data.n_test) == (200, 50, 250)
    sup = load_config(None, ["data.path=mine.npz"])  # other data: the documented defaults
    assert (sup.data.n_train, sup.data.n_val, sup.data.n_test) == (950, 50, None)


# --- case 11 ----------------------------------------------------------------------------------

def test_metrics_losses_mean_the_same_thing(finished):
    run_dir, _ = finished
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    for row in rows:
        train, val = float(row["train_loss"]), float(row["val_loss"])
        assert 0.05 < val / train < 20, row  # both the training objective (was: meV MAE vs normalised MSE)
        assert float(row["val_weighted_mae"]) == pytest.approx(
            float(row["val_forces_mae_mev_per_a"]) * 80.0, rel=0.2)  # the selection metric, forces dominated


def test_config_yaml_records_the_demo_data_path(finished):
    from empp_ff.data.demo import demo_data_path

    run_dir, _ = finished
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["path"] == str(demo_data_path())


@pytest.mark.slow
def test_info_lists_validation_and_training_metrics_apart(tmp_path, finished):
    run_dir, _ = finished
    _ok(CliRunner().invoke(main, ["export", str(run_dir), "-o", str(tmp_path / "m.pt")]))
    text = _ok(CliRunner().invoke(main, ["info", str(tmp_path / "m.pt")]))
    val = text.split("validation metrics")[1].split("training metrics")[0]
    assert "val_forces_mae_mev_per_a" in val and "train_" not in val
    assert "train_loss" in text.split("training metrics")[1]


def test_learning_curves_show_pretraining_and_use_readable_legends():
    from empp_ff.train.plots import learning_curves_figure

    pretrain = [{"epoch": e, "train_loss": 3.0 / e, "val_loss": 3.2 / e, "empp_loss": 3.0 / e,
                 "val_empp_loss": 3.2 / e, "empp_radius_kl": 1.0 / e, "val_empp_radius_kl": 1.1 / e,
                 "empp_direction_kl": 2.0 / e, "val_empp_direction_kl": 2.1 / e,
                 "train_energy_mae_mev": float("nan"), "val_energy_mae_mev": float("nan")} for e in (1, 2, 3)]
    for history in (pretrain, pretrain[:1]):  # a one-epoch run shows its points too
        fig = learning_curves_figure(history)
        assert fig.axes and all(ax.lines for ax in fig.axes)
        assert {ax.get_title() for ax in fig.axes} >= {"EMPP radius KL", "EMPP direction KL"}
        labels = {t.get_text() for ax in fig.axes for t in ax.get_legend().get_texts()}
        assert labels == {"train", "validation"}


# --- case 7: a damaged checkpoint --------------------------------------------------------------

@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_damaged_last_pt_is_a_clear_error(tmp_path, finished, damage):
    run_dir, overrides = finished
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    last = copy / "checkpoints" / "last.pt"
    last.write_bytes(b"" if damage == "empty" else last.read_bytes()[:1000])
    rest = [kv for kv in overrides if not kv.startswith("run_dir=")] + [f"run_dir={copy}"]
    output = _failed(_train(rest), f"cannot read checkpoint {last}: ")
    reason = output.split(f"cannot read checkpoint {last}: ")[1].strip()
    assert len(reason) > 10, output  # was: an empty reason
    if damage == "empty":
        assert "the file is empty (0 bytes" in output


# --- issue 28, point 4: training removes only the temporaries it can prove are its own ----------

@pytest.mark.slow
def test_training_start_keeps_other_programs_temporaries_and_a_running_md(tmp_path, tiny_train_overrides):
    """A user's `.thesis.backup1.tmp` in a sub-folder, a file of the old temporary pattern and the
    in-progress trajectory of an `empp-ff md --out RUN_DIR/md.traj` survive a training start; a
    kill -9 leftover of the run's own metrics.csv is removed."""
    import ase.io

    from empp_ff._atomic import temporary_prefix
    from empp_ff.testing.models import demo_checkpoint
    from empp_ff.testing.processes import cli_process, stop_when, temporaries

    from conftest import ethanol

    demo_checkpoint(tmp_path / "src" / "checkpoints" / "best.pt", seed=5, num_interactions=1, correlation=2)
    _ok(CliRunner().invoke(main, ["export", str(tmp_path / "src"), "-o", str(tmp_path / "m.pt")]))
    ase.io.write(tmp_path / "ethanol.xyz", ethanol())
    run_dir = tmp_path / "runs" / "demo"
    (run_dir / "sub").mkdir(parents=True)
    users = {run_dir / "sub" / ".thesis.backup1.tmp": b"chapter 3", run_dir / ".notes.abcdef.tmp": b"notes",
             run_dir / "checkpoints" / ".mine.tmp": b"mine"}
    (run_dir / "checkpoints").mkdir()
    for path, data in users.items():
        path.write_bytes(data)
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftover = run_dir / (temporary_prefix(run_dir / "metrics.csv").rsplit("-", 2)[0] + f"-{dead.pid}-abcdef12.tmp")
    leftover.write_text("half a metrics.csv of a killed training")
    md = cli_process(["md", tmp_path / "m.pt", tmp_path / "ethanol.xyz", "--steps", 10**6, "--dt", 0.001,
                      "--interval", 5, "--no-progress", "--device", "cpu", "--out", run_dir / "md.traj"], tmp_path)
    try:
        deadline = time.monotonic() + 300
        while not any(p.name.startswith(".md.traj.") and p.stat().st_size > 2000 for p in temporaries(run_dir)):
            assert md.poll() is None and time.monotonic() < deadline, md.communicate()[1][-2000:]
            time.sleep(0.1)
        output = _ok(_train(tiny_train_overrides(run_dir, epochs=1)))
        assert "removed 1 temporary file(s)" in output
        assert not leftover.exists()
        assert {path: path.read_bytes() for path in users} == users
        assert md.poll() is None  # the md still runs, its temporary still there
        assert any(p.name.startswith(".md.traj.") for p in temporaries(run_dir))
    finally:
        status, _, stderr = stop_when(md, lambda: True)
    assert status == 143, stderr[-2000:]
    assert len(ase.io.read(run_dir / "md.traj", index=":")) > 1  # its frames under the target name
    assert not [p for p in temporaries(run_dir) if p.name.startswith(".md.traj.")]
