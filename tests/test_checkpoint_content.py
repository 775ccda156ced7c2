"""Checkpoint content, defined in one place (train/checkpoint.py): what a run writes, and
how checkpoints of older empp-ff, which lack some keys, are read back."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from empp_ff.train.checkpoint import (
    CONTENT,
    initialisation_part,
    load_checkpoint,
    potential_weights,
    read_progress,
    save_checkpoint,
    start_atomic_energies,
)
from empp_ff.train.config import load_config
from empp_ff.train.trainer import run_training

QUIET = lambda msg: None  # noqa: E731
HISTORY = [{"epoch": 1, "val_weighted_mae": 5.0}, {"epoch": 2, "val_weighted_mae": 3.0},
           {"epoch": 3, "val_weighted_mae": 4.0}]


def test_progress_of_an_older_checkpoint_is_derived_as_it_was_then():
    old = {"epoch": 3, "step": 12, "best_val": 3.0, "history": HISTORY}  # no best_epoch, stop_best, wall time
    progress = read_progress(old, lambda history: 2 if history == HISTORY else -1)
    assert (progress.epoch, progress.step, progress.best_epoch, progress.stop_best) == (3, 12, 2, (3.0, 2))
    assert progress.wall_time_s == 0.0 and progress.history == HISTORY
    new = dict(old, best_epoch=2, stop_best=[5.0, 1], wall_time_s=7.5)
    assert read_progress(new, lambda history: -1)[3:5] == (2, (5.0, 1))
    assert read_progress({"epoch": 0, "step": 0, "best_val": math.inf}, lambda h: 0).history == []


def test_start_energies_weights_and_the_bundle_part():
    spec = SimpleNamespace(atomic_energies=[-1.0, -2.0])
    assert start_atomic_energies(None, spec) == [-1.0, -2.0]
    assert start_atomic_energies({"backbone_spec": {}}, spec) == [-1.0, -2.0]  # older: the refitted ones
    assert start_atomic_energies({"start_atomic_energies": [-3, -4]}, spec) == [-3.0, -4.0]
    raw, ema = {"w": torch.zeros(1)}, {"w": torch.ones(1)}
    assert potential_weights({"potential_state": raw, "ema_potential_state": ema}) is ema
    assert potential_weights({"potential_state": raw, "ema_potential_state": ema}, use_ema=False) is raw
    assert potential_weights({"potential_state": raw, "ema_potential_state": None}) is raw
    full = {key: key for key in CONTENT} | {"format": "f", "format_version": 1, "path": "p"}
    full["ema_potential_state"] = ema
    part = initialisation_part(full)
    assert "potential_state" not in part and "optimizer_state" not in part and "path" not in part
    assert part["ema_potential_state"] is ema and part["empp_state"] == "empp_state"


@pytest.mark.slow
def test_a_run_writes_what_content_says_and_resumes_from_an_older_checkpoint(tmp_path, tiny_train_overrides):
    """Without the keys older empp-ff did not write (start energies, best epoch, last improvement,
    wall time, denoising state), a checkpoint resumes to the uninterrupted run's weights (E0s not
    refitted: the start energies then equal the spec's)."""
    sets = {"model.dtype": "float64", "empp.enabled": True, "train.refit_e0s": False}
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_training(load_config(None, tiny_train_overrides(straight, epochs=2, **sets)), log=QUIET)
    run_training(load_config(None, tiny_train_overrides(resumed, epochs=1, **sets)), log=QUIET)
    last = resumed / "checkpoints" / "last.pt"
    state = load_checkpoint(last, prefer="last")
    assert set(state) == set(CONTENT) | {"format", "format_version", "path"}
    for key in ("start_atomic_energies", "best_epoch", "stop_best", "wall_time_s", "denoise_state", "path"):
        state.pop(key)
    save_checkpoint(state, last)
    run_training(load_config(None, tiny_train_overrides(resumed, epochs=2, **sets)), log=QUIET)  # max_epochs 1 -> 2
    a = load_checkpoint(straight, prefer="last")
    b = load_checkpoint(resumed, prefer="last")
    assert b["epoch"] == 2 and b["best_epoch"] == a["best_epoch"]
    for key in ("potential_state", "empp_state"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
