"""The training CLI end to end on tiny data: train, eval, EMPP, pretrain → finetune."""

import csv
import json

import pytest
from click.testing import CliRunner

from empp_ff.cli import main


def _sets(items):
    return [a for kv in items for a in ("--set", kv)]


def _invoke(args):
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    return result


def test_misspelled_key_fails_before_any_work(tmp_path):
    run_dir = tmp_path / "never"
    result = _invoke(["train", "--set", f"run_dir={run_dir}", "--set", "train.bach_size=4"])
    assert result.exit_code != 0
    assert "train.bach_size" in result.output and "train.batch_size" in result.output
    assert not run_dir.exists()


def test_config_file_with_unknown_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  pth: x.npz\n")
    result = _invoke(["train", str(cfg)])
    assert result.exit_code != 0 and "unknown config key 'data.pth'" in result.output


@pytest.mark.slow
def test_train_then_eval_json(tmp_path, tiny_train_overrides):
    run_dir = tmp_path / "run"
    result = _invoke(["train"] + _sets(tiny_train_overrides(run_dir, epochs=1)))
    assert result.exit_code == 0, result.output
    assert "Test set" in result.output and "forces MAE" in result.output
    for name in ("config.yaml", "metrics.csv", "checkpoints/last.pt", "checkpoints/best.pt",
                 "test_metrics.json", "splits.json", "plots/parity_energy.png", "plots/parity_forces.png",
                 "plots/learning_curves.png"):
        assert (run_dir / name).is_file(), name
    test_metrics = json.loads((run_dir / "test_metrics.json").read_text())
    assert test_metrics["n_structures"] == 8

    from empp_ff.data.demo import demo_data_path

    result = _invoke(["eval", str(run_dir), str(demo_data_path()), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    for key in ("n_structures", "energy_mae_mev", "energy_rmse_mev", "forces_mae_mev_per_a", "forces_rmse_mev_per_a"):
        assert key in report
    assert report["split"] == "test" and report["n_structures"] == 8
    # the eval CLI and the end-of-training test report agree
    assert report["forces_mae_mev_per_a"] == pytest.approx(test_metrics["forces_mae_mev_per_a"], rel=1e-5)
    assert report["energy_rmse_mev"] >= report["energy_mae_mev"] > 0

    # Issue 19: without best.pt a run directory is an error naming the file, not a quiet eval of last.pt.
    last = run_dir / "checkpoints" / "last.pt"
    (run_dir / "checkpoints" / "best.pt").unlink()
    result = _invoke(["eval", str(run_dir), str(demo_data_path()), "--json"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{run_dir} has no checkpoints/best.pt" in result.output and "not using that in its place" in result.output
    assert f"give the file instead of the run directory: {last}" in result.output
    result = _invoke(["eval", str(last), str(demo_data_path()), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["checkpoint"] == str(last)


@pytest.mark.slow
def test_empp_training_logs_loss_parts_and_pretrain_finetune(tmp_path, tiny_train_overrides):
    empp = {"empp.enabled": True, "empp.num_masks": 2, "empp.weight": 1.0}
    sup = tmp_path / "sup"
    result = _invoke(["train"] + _sets(tiny_train_overrides(sup, epochs=1, **empp)))
    assert result.exit_code == 0, result.output
    row = next(csv.DictReader((sup / "metrics.csv").open()))
    for col in ("empp_loss", "empp_radius_kl", "empp_direction_kl", "val_empp_loss"):
        assert float(row[col]) > 0, col

    pre = tmp_path / "pre"
    result = _invoke(["train"] + _sets(tiny_train_overrides(pre, epochs=1, task="pretrain", **empp)))
    assert result.exit_code == 0, result.output
    row = next(csv.DictReader((pre / "metrics.csv").open()))
    assert float(row["empp_loss"]) > 0 and row["train_energy_loss"] == ""  # EMPP alone

    fine = tmp_path / "fine"
    result = _invoke(["train"] + _sets(tiny_train_overrides(fine, epochs=1, finetune_from=str(pre))))
    assert result.exit_code == 0, result.output
    record = json.loads((fine / "finetune.json").read_text())
    assert record["source_task"] == "pretrain"
    assert any("interactions" in name for name in record["loaded"])
    # parameters only: the data-dependent buffers (E0s, scale/shift) are the new run's own
    assert not any("atomic_energies" in name or "scale_shift" in name for name in record["loaded"])
