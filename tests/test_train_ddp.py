"""DDP with 2 CPU processes (gloo) matches single-process training semantics."""

import csv
import socket
import subprocess
import sys

import pytest
import torch

from empp_ff.train.checkpoint import load_checkpoint
from empp_ff.train.config import load_config
from empp_ff.train.trainer import run_training

pytestmark = pytest.mark.slow  # subprocess trainings: the slow tier (DEVELOPERS.md)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_follow_the_single_process_loss_curve(tmp_path, tiny_train_overrides):
    extra = {"model.dtype": "float64", "train.ema": False}
    single = tmp_path / "single"
    run_training(load_config(None, tiny_train_overrides(single, epochs=2, **extra)), log=lambda m: None)

    ddp = tmp_path / "ddp"
    args = tiny_train_overrides(ddp, epochs=2, **extra)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--nnodes", "1",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "empp_ff.cli", "train"] + [a for kv in args for a in ("--set", kv)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # rank 0 alone reported and wrote the run directory
    assert done.stdout.count("Test set") == 1

    rows_single = list(csv.DictReader((single / "metrics.csv").open()))
    rows_ddp = list(csv.DictReader((ddp / "metrics.csv").open()))
    assert len(rows_single) == len(rows_ddp) == 2
    for a, b in zip(rows_single, rows_ddp):
        assert int(a["step"]) == int(b["step"])  # same number of (global) optimiser steps
        for key in ("train_loss", "val_energy_mae_mev", "val_forces_mae_mev_per_a"):
            assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-6), key
    w_single = load_checkpoint(single, prefer="last")["potential_state"]
    w_ddp = load_checkpoint(ddp, prefer="last")["potential_state"]
    for k in w_single:
        assert torch.allclose(w_single[k], w_ddp[k], rtol=1e-6, atol=1e-9), k
