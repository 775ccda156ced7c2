"""Training to convergence: early stopping (train.patience), the plateau learning-rate
schedule (train.scheduler: plateau), the cap (train.max_epochs) and what
test_metrics.json says of how a run ended."""

import csv
import json
import math

import pytest
import torch

from empp_ff.train.config import ConfigError, load_config
from empp_ff.train.schedule import LearningRateSchedule
from empp_ff.train.stopping import StopRule
from empp_ff.train.trainer import Trainer, run_training

QUIET = lambda msg: None  # noqa: E731
F64 = {"model.dtype": "float64"}


def _optimizer(lr=1.0):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


# ----------------------------------------------------------------------------- units
def test_stop_rule_patience_cap_and_still_improving():
    rule = StopRule(max_epochs=10, patience=3)
    assert not rule.stopped(epoch=4, best_epoch=2)
    assert rule.stopped(epoch=5, best_epoch=2) and rule.stopped_early(5, 2)
    assert rule.record(5, 2, 1.0)["stopped_by"] == "patience"
    # the cap with the best epoch inside the patience window: still improving, not converged
    capped = rule.record(10, 9, 1.0)
    assert capped["stopped_by"] == "max_epochs" and capped["still_improving"] and not capped["converged"]
    # without patience, only the cap; still improving when the last epoch was the best
    plain = StopRule(max_epochs=4, patience=None)
    assert not plain.stopped(3, 1) and plain.stopped(4, 1)
    assert plain.still_improving(4, 4) and not plain.still_improving(4, 3)


def test_best_epoch_of_a_history_without_it():
    history = [{"epoch": 1, "val_weighted_mae": 5.0}, {"epoch": 2, "val_weighted_mae": 3.0},
               {"epoch": 3, "val_weighted_mae": 4.0}]
    assert StopRule.best_epoch_of(history, supervised=True) == 2


def test_cosine_schedule_is_the_former_lambda_schedule_to_the_bit():
    """The schedule object replaced torch's LambdaLR with the same warm-up + cosine: a run
    with the default schedule gets the same learning rate at every step as before."""
    warmup, total, ratio = 7, 50, 0.1

    def factor(step):  # the former train/schedule.py warmup_cosine
        if warmup and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return ratio + (1.0 - ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    old_opt, new_opt = _optimizer(0.013), _optimizer(0.013)
    old = torch.optim.lr_scheduler.LambdaLR(old_opt, factor)
    new = LearningRateSchedule(new_opt, "cosine", warmup_steps=warmup, total_steps=total, min_ratio=ratio)
    for _ in range(60):
        assert old_opt.param_groups[0]["lr"] == new_opt.param_groups[0]["lr"]
        old_opt.step(), new_opt.step(), old.step(), new.step()
    # a checkpoint of an older empp-ff holds LambdaLR's state: it resumes at the same step
    resumed_opt = _optimizer(0.013)
    resumed = LearningRateSchedule(resumed_opt, "cosine", warmup_steps=warmup, total_steps=total, min_ratio=ratio)
    resumed.load_state_dict(old.state_dict())
    assert resumed.steps == 60 and resumed_opt.param_groups[0]["lr"] == new_opt.param_groups[0]["lr"]


def test_plateau_lowers_the_rate_after_its_patience_and_stops_at_the_floor():
    opt = _optimizer(1.0)
    schedule = LearningRateSchedule(opt, "plateau", plateau_factor=0.5, plateau_patience=2, plateau_min_ratio=0.2)
    lowered = [schedule.epoch_end(m) for m in (3.0, 2.0, 2.5, 2.1)]  # best 2.0, then two epochs without
    assert lowered == [False, False, False, True] and opt.param_groups[0]["lr"] == 0.5
    assert not schedule.epoch_end(1.0) and opt.param_groups[0]["lr"] == 0.5  # improvement: kept
    for metric in (1.5, 1.5, 1.5, 1.5, 1.5, 1.5):
        schedule.epoch_end(metric)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.2)  # 0.5 -> 0.25 -> floor 0.2, never below
    state = schedule.state_dict()
    again = LearningRateSchedule(_optimizer(1.0), "plateau", plateau_factor=0.5, plateau_patience=2,
                                 plateau_min_ratio=0.2)
    again.load_state_dict(state)
    assert again.state_dict() == state and again.optimizer.param_groups[0]["lr"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="'plateau', not 'cosine'"):
        LearningRateSchedule(_optimizer(), "cosine").load_state_dict(state)


@pytest.mark.parametrize("key, value, message", [
    ("train.patience", 0, "train.patience must be >= 1"),
    ("train.scheduler", "step", "train.scheduler must be one of cosine, plateau"),
    ("train.plateau_factor", 1.5, "train.plateau_factor must lie in"),
    ("train.plateau_patience", 0, "train.plateau_patience must be >= 1"),
])
def test_bad_stopping_and_schedule_options_are_named(key, value, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [f"{key}={value}"])


# ----------------------------------------------------------------------------- the loop
def _scripted_validation(monkeypatch, values):
    """The real training loop with the validation metric replaced by ``values`` (one an
    epoch; the list may be replaced between runs). Returns the list of calls."""
    original, calls = Trainer.validate, []

    def validate(self):
        result = original(self)
        result["val_weighted_mae"] = values[len(calls)]
        calls.append(1)
        return result

    monkeypatch.setattr(Trainer, "validate", validate)
    return calls


@pytest.mark.slow
def test_early_stopping_ends_the_run_and_records_how(monkeypatch, tmp_path, tiny_train_overrides):
    run = tmp_path / "run"
    values = [5.0, 4.0, 4.5, 4.2, 4.1, 1.0, 0.5]
    calls = _scripted_validation(monkeypatch, values)
    lines = []
    sets = tiny_train_overrides(run, epochs=7, **{"train.patience": 3})
    result = run_training(load_config(None, sets), log=lines.append)
    assert len(calls) == 5  # best at epoch 2, then 3 epochs without improvement
    assert (result["best_epoch"], result["epochs_run"], result["epoch"]) == (2, 5, 2)
    assert result["stopped_by"] == "patience" and result["converged"] and not result["still_improving"]
    assert result["wall_time_s"] > 0
    assert any(line.startswith("early stopping: no better validation metric by more than 0.50% in 3 epochs "
                               "(last at epoch 2); best.pt from epoch 2 of 5") for line in lines), lines
    stored = json.loads((run / "test_metrics.json").read_text())
    assert stored["best_epoch"] == 2 and stored["epochs_run"] == 5
    assert len(list(csv.DictReader((run / "metrics.csv").open()))) == 5
    # The same command again: a finished run, reported again, not trained further.
    again = run_training(load_config(None, sets), log=QUIET)
    assert len(calls) == 5 and again["epochs_run"] == 5
    # More patience continues it (patience may change on resume; it changes nothing but when to stop).
    values[5:] = [0.5, 0.6]  # epochs 6 and 7: a new best, then one epoch without
    more = run_training(load_config(None, tiny_train_overrides(run, epochs=7, **{"train.patience": 5})), log=QUIET)
    assert (more["best_epoch"], more["epochs_run"], more["stopped_by"]) == (6, 7, "max_epochs")
    assert more["still_improving"]


@pytest.mark.slow
def test_a_run_that_hits_the_cap_while_improving_says_so(tmp_path, tiny_train_overrides):
    lines = []
    result = run_training(load_config(None, tiny_train_overrides(tmp_path / "run", epochs=2)), log=lines.append)
    assert result["epochs_run"] == 2 and result["stopped_by"] == "max_epochs"
    if result["best_epoch"] == 2:
        assert result["still_improving"]
        assert any("reached while the validation metric was still improving" in line for line in lines)
    else:
        assert not result["still_improving"]


@pytest.mark.slow
def test_plateau_run_resumes_exactly(tmp_path, tiny_train_overrides):
    """A plateau-scheduled run interrupted after epoch 2 ends with the same learning rates and
    weights as the uninterrupted run (the schedule's state is in the checkpoint)."""
    extra = {**F64, "train.scheduler": "plateau", "train.plateau_patience": 1, "train.plateau_factor": 0.5,
             "train.lr": 0.05}
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_training(load_config(None, tiny_train_overrides(straight, epochs=4, **extra)), log=QUIET)
    run_training(load_config(None, tiny_train_overrides(resumed, epochs=2, **extra)), log=QUIET)
    run_training(load_config(None, tiny_train_overrides(resumed, epochs=4, **extra)), log=QUIET)
    rows = [list(csv.DictReader((d / "metrics.csv").open())) for d in (straight, resumed)]
    assert [r["lr"] for r in rows[0]] == [r["lr"] for r in rows[1]]
    assert [r["val_weighted_mae"] for r in rows[0]] == [r["val_weighted_mae"] for r in rows[1]]


@pytest.mark.slow
def test_min_improvement_ignores_crawling_gains_for_patience_but_not_for_best_pt(monkeypatch, tmp_path,
                                                                                tiny_train_overrides):
    rule = StopRule(max_epochs=10, patience=2, min_improvement=0.01)
    assert rule.improves(0.98, 1.0) and not rule.improves(0.995, 1.0) and rule.improves(5.0, math.inf)
    # epochs 2-4 each better than the last by 0.5 %: best.pt follows them, patience does not
    values = [1.0, 0.995, 0.990, 0.985, 0.984, 0.983]
    calls = _scripted_validation(monkeypatch, values)
    sets = tiny_train_overrides(tmp_path / "run", epochs=6, **{"train.patience": 2, "train.min_improvement": 0.01})
    result = run_training(load_config(None, sets), log=QUIET)
    assert len(calls) == 3 and result["stopped_by"] == "patience"
    assert (result["best_epoch"], result["last_improvement_epoch"], result["epochs_run"]) == (3, 1, 3)


def test_plateau_threshold_counts_small_gains_as_none():
    opt = _optimizer(1.0)
    schedule = LearningRateSchedule(opt, "plateau", plateau_patience=2, plateau_threshold=0.01)
    assert [schedule.epoch_end(m) for m in (1.0, 0.995, 0.992)] == [False, False, True]
    assert opt.param_groups[0]["lr"] == 0.5


@pytest.mark.slow
def test_plateau_min_improvement_sets_the_schedules_threshold_apart_from_patience(monkeypatch, tmp_path,
                                                                                  tiny_train_overrides):
    """Gains of 0.5 % an epoch: under train.min_improvement 0.01 alone they are no improvement
    for the schedule either (the rate halves); with plateau_min_improvement 0 they keep it."""
    calls = _scripted_validation(monkeypatch, [1.0, 0.995, 0.990, 0.985] * 2)  # one crawl for each run
    base = {"train.scheduler": "plateau", "train.plateau_patience": 1, "train.plateau_factor": 0.5,
            "train.warmup_epochs": 0, "train.min_improvement": 0.01, "train.patience": 10}
    rates = {}
    for name, extra in (("shared", {}), ("apart", {"train.plateau_min_improvement": 0.0})):
        before = len(calls)
        run_training(load_config(None, tiny_train_overrides(tmp_path / name, epochs=4, **base, **extra)), log=QUIET)
        assert len(calls) - before == 4
        rates[name] = [float(r["lr"]) for r in csv.DictReader((tmp_path / name / "metrics.csv").open())]
    assert rates["apart"][1:] == [rates["apart"][0]] * 3
    assert rates["shared"][-1] < rates["shared"][0]
    with pytest.raises(ConfigError, match="train.plateau_min_improvement must lie in"):
        load_config(None, ["train.plateau_min_improvement=1.5"])
