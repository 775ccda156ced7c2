"""Training runs resume exactly: after a clean stop and after kill -9."""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from empp_ff.train.checkpoint import load_checkpoint
from empp_ff.train.config import load_config
from empp_ff.train.trainer import run_training

F64 = {"model.dtype": "float64"}


def _weights(run_dir):
    return load_checkpoint(run_dir / "checkpoints" / "last.pt", prefer="last")["potential_state"]


def _assert_same_weights(a, b):
    # Bit for bit: a resumed run rounds as the uninterrupted one (empp_ff/train/replay.py).
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"weights differ at {k}"


@pytest.mark.slow
def test_resume_ends_where_uninterrupted_run_ends(tmp_path, tiny_train_overrides):
    quiet = lambda msg: None  # noqa: E731
    straight = tmp_path / "straight"
    run_training(load_config(None, tiny_train_overrides(straight, epochs=3, **F64)), log=quiet)

    resumed = tmp_path / "resumed"

    def interrupt_after_first_epoch(msg):
        if msg.startswith("epoch    1/3"):  # logged after the epoch's checkpoint is written
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_training(load_config(None, tiny_train_overrides(resumed, epochs=3, **F64)),
                     log=interrupt_after_first_epoch)
    assert load_checkpoint(resumed, prefer="last")["epoch"] == 1
    # The same command again continues from epoch 1.
    run_training(load_config(None, tiny_train_overrides(resumed, epochs=3, **F64)), log=quiet)

    _assert_same_weights(_weights(straight), _weights(resumed))
    rows_a = list(csv.DictReader((straight / "metrics.csv").open()))
    rows_b = list(csv.DictReader((resumed / "metrics.csv").open()))
    assert len(rows_a) == len(rows_b) == 3
    for a, b in zip(rows_a, rows_b):
        for key in ("epoch", "step", "lr", "train_loss", "val_energy_mae_mev", "val_forces_mae_mev_per_a"):
            assert a[key] == b[key], key


def _result_without_wall_time(run_dir):
    """test_metrics.json less the wall time it records (the one value a resumed run may not share)."""
    import json

    result = json.loads((run_dir / "test_metrics.json").read_text())
    result.pop("wall_time_s")
    return result


def _csv_without_wall_time(path):
    return [{k: v for k, v in row.items() if k != "wall_time_s"} for row in csv.DictReader(path.open())]


@pytest.mark.slow
def test_kill_inside_an_epoch_resumes_to_the_uninterrupted_result_exactly(tmp_path, tiny_train_overrides):
    """Issue 19: kill -9 at a random batch inside an epoch of a 3-epoch run with EMPP and the per-epoch
    E0 refit, then the same command: test_metrics.json equal to the uninterrupted run's to the last digit."""
    import random

    steps_per_epoch, epochs = 4, 3  # 16 training structures, batches of 4
    extra = {"empp.enabled": True, "train.threads": 1}
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def command(run_dir):
        args = tiny_train_overrides(run_dir, epochs=epochs, **extra)
        return [sys.executable, "-m", "empp_ff.cli", "train"] + [a for kv in args for a in ("--set", kv)]

    # The uninterrupted run is the same command in a process of its own, as a user runs it (in the
    # test process, after other tests' TorchScript calls, it rounds differently in the 9th digit).
    straight = tmp_path / "straight"
    done = subprocess.run(command(straight), capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]

    # Inside epoch 2 or 3 (not its first batch), so the resumed run replays a partly done epoch.
    kill_at = random.choice([s for s in range(steps_per_epoch + 1, epochs * steps_per_epoch) if s % steps_per_epoch])
    run_dir = tmp_path / "killed"
    cmd = command(run_dir)
    killed = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                            env=dict(env, EMPP_FF_KILL_AT_STEP=str(kill_at)))
    assert killed.returncode == -signal.SIGKILL, (kill_at, killed.stderr[-2000:])
    done_epochs = kill_at // steps_per_epoch
    assert load_checkpoint(run_dir, prefer="last")["epoch"] == done_epochs
    assert not (run_dir / "test_metrics.json").exists()

    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming {run_dir} after epoch {done_epochs}" in resumed.stdout
    assert _result_without_wall_time(run_dir) == _result_without_wall_time(straight), kill_at
    assert _csv_without_wall_time(run_dir / "metrics.csv") == _csv_without_wall_time(straight / "metrics.csv")


@pytest.mark.slow
def test_resume_refuses_a_different_config(tmp_path, tiny_train_overrides):
    from empp_ff.train.config import ConfigError

    run_dir = tmp_path / "run"
    run_training(load_config(None, tiny_train_overrides(run_dir, epochs=1)), log=lambda m: None)
    with pytest.raises(ConfigError, match="different config.*train.lr"):
        run_training(load_config(None, tiny_train_overrides(run_dir, epochs=2, **{"train.lr": 0.5})),
                     log=lambda m: None)


@pytest.mark.slow
def test_kill_minus_9_then_same_command_resumes_and_completes(tmp_path, tiny_train_overrides):
    run_dir = tmp_path / "killed"
    args = tiny_train_overrides(run_dir, epochs=8)
    cmd = [sys.executable, "-m", "empp_ff.cli", "train"] + [a for kv in args for a in ("--set", kv)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run_dir / "checkpoints" / "last.pt"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            if last.exists() and load_checkpoint(last, prefer="last")["epoch"] >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "training finished before it could be killed; make it longer"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = load_checkpoint(last, prefer="last")["epoch"]
    assert 2 <= killed_at < 8
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resuming {run_dir} after epoch {killed_at}" in done.stdout
    assert load_checkpoint(last, prefer="last")["epoch"] == 8
    assert len((run_dir / "metrics.csv").read_text().splitlines()) == 9
    assert (run_dir / "test_metrics.json").exists()


def test_resume_accepts_a_run_started_before_a_config_key_existed(tmp_path):
    from empp_ff.train.resume import check_resumable

    cfg = load_config(None, [f"run_dir={tmp_path / 'r'}"])
    saved = cfg.to_dict()
    del saved["data"]["energy_only"]  # as written by an older empp-ff
    check_resumable(saved, cfg, tmp_path)  # the default then equals the default now: no error
    saved["train"]["lr"] = 123.0
    with pytest.raises(Exception, match="train.lr"):
        check_resumable(saved, cfg, tmp_path)


def test_epoch_streams_are_replayable_and_the_callers_generators_are_put_back():
    import random

    import numpy as np

    from empp_ff.train.replay import replayable_run, seed_global_generators

    def draw():
        return torch.rand(3).tolist(), random.random(), float(np.random.rand())

    torch.manual_seed(3), random.seed(3), np.random.seed(3)
    callers = draw()
    torch.manual_seed(3), random.seed(3), np.random.seed(3)
    with replayable_run(torch.device("cpu")):
        assert not torch._C._get_graph_executor_optimize()  # no re-optimised TorchScript graphs on CPU
        seed_global_generators(1, epoch=2, rank=0)
        first = draw()
        seed_global_generators(1, epoch=2, rank=0)
        assert draw() == first
        for other in ((1, 3, 0), (1, 2, 1), (2, 2, 0)):
            seed_global_generators(*other)
            assert draw() != first, other
    assert torch._C._get_graph_executor_optimize()
    assert draw() == callers
