"""EMPP replay during fine-tuning (empp.replay_data): unlabelled structures of another
file are rehearsed with the EMPP loss beside every supervised batch."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

from empp_ff.train.checkpoint import load_checkpoint
from empp_ff.train.config import ConfigError, load_config
from empp_ff.train.trainer import run_training

from conftest import ETHANOL_POSITIONS

QUIET = lambda msg: None  # noqa: E731
F64 = {"model.dtype": "float64"}


def _replay_file(path, n_cho=8, n_with_n=3, seed=0):
    """Ethanol-like C/H/O structures (usable with the aspirin demo's elements) and some with
    a nitrogen (to be left out)."""
    from ase import Atoms
    from ase.io import write

    rng = np.random.default_rng(seed)
    frames = [Atoms("CCOHHHHHH", positions=ETHANOL_POSITIONS + 0.05 * rng.standard_normal((9, 3)))
              for _ in range(n_cho)]
    frames += [Atoms("CCNHHHHHH", positions=ETHANOL_POSITIONS + 0.05 * rng.standard_normal((9, 3)))
               for _ in range(n_with_n)]
    write(str(path), frames, format="extxyz")
    return path


def _sets(tiny_train_overrides, run, replay, epochs=2, **extra):
    return tiny_train_overrides(run, epochs=epochs, **{"empp.enabled": True, "empp.replay_data": str(replay),
                                                       "empp.replay_batch_size": 3, **extra})


@pytest.mark.slow
def test_replay_is_logged_and_leaves_out_foreign_elements(tmp_path, tiny_train_overrides):
    replay = _replay_file(tmp_path / "replay.xyz")
    lines = []
    run_training(load_config(None, _sets(tiny_train_overrides, tmp_path / "run", replay)), log=lines.append)
    assert any("EMPP replay: 8 of 11 structures" in line for line in lines), lines
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert all(math.isfinite(float(r["replay_empp_loss"])) and float(r["replay_empp_loss"]) > 0 for r in rows)
    assert all(r["empp_loss"] for r in rows)  # weight 1: the run's own EMPP loss too


@pytest.mark.slow
def test_replay_alone_trains_the_empp_head(tmp_path, tiny_train_overrides):
    """empp.weight 0 with replay: the start's head is trained by the replay loss only."""
    replay = _replay_file(tmp_path / "replay.xyz")
    run = tmp_path / "run"
    run_training(load_config(None, _sets(tiny_train_overrides, run, replay, epochs=1, **{"empp.weight": 0})),
                 log=QUIET)
    row = next(csv.DictReader((run / "metrics.csv").open()))
    assert row["empp_loss"] == "" and float(row["replay_empp_loss"]) > 0
    state = load_checkpoint(run, prefer="last")
    assert state["empp_state"] is not None


@pytest.mark.slow
def test_replay_resumes_exactly(tmp_path, tiny_train_overrides):
    replay = _replay_file(tmp_path / "replay.xyz")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_training(load_config(None, _sets(tiny_train_overrides, straight, replay, epochs=2, **F64)), log=QUIET)

    def interrupt_after_first_epoch(msg):
        if msg.startswith("epoch    1/2"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_training(load_config(None, _sets(tiny_train_overrides, resumed, replay, epochs=2, **F64)),
                     log=interrupt_after_first_epoch)
    run_training(load_config(None, _sets(tiny_train_overrides, resumed, replay, epochs=2, **F64)), log=QUIET)
    a = load_checkpoint(straight, prefer="last")["potential_state"]
    b = load_checkpoint(resumed, prefer="last")["potential_state"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_replay_errors_name_the_problem(tmp_path, tiny_train_overrides):
    only_n = _replay_file(tmp_path / "n.xyz", n_cho=0, n_with_n=4)
    with pytest.raises(ConfigError, match="none of the 4 structures .* is made of the elements"):
        run_training(load_config(None, _sets(tiny_train_overrides, tmp_path / "a", only_n, epochs=1)), log=QUIET)
    with pytest.raises(ConfigError, match="empp.replay_data: file not found"):
        load_config(None, _sets(tiny_train_overrides, tmp_path / "b", tmp_path / "missing.xyz"))
    with pytest.raises(ConfigError, match="replay_weight must be >= 0"):
        load_config(None, _sets(tiny_train_overrides, tmp_path / "c", only_n, **{"empp.replay_weight": -1}))
