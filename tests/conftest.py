"""Shared fixtures: tiny models and tiny training configs (CPU, seconds)."""

from __future__ import annotations

import os

import pytest
import torch

# Keep the suite light on the 2-core CI machine.
torch.set_num_threads(min(2, os.cpu_count() or 1))

TINY_MODEL = {
    "num_channels": 8,
    "max_L": 1,
    "num_interactions": 2,
    "correlation": 2,
    "radial_mlp": [16],
    "num_bessel": 6,
}


@pytest.fixture
def tiny_train_overrides(tmp_path):
    """--set style overrides for a seconds-long training on the bundled demo data."""

    def make(run_dir=None, epochs=2, **extra):
        items = {
            "run_dir": str(run_dir or tmp_path / "run"),
            "data.n_train": 16,
            "data.n_val": 4,
            "data.n_test": 8,
            "train.max_epochs": epochs,
            "train.batch_size": 4,
            "train.progress": False,
            "train.tensorboard": False,
            **{f"model.{k}": v for k, v in TINY_MODEL.items()},
            "empp.enabled": False,
            **extra,
        }
        return [f"{k}={v}" for k, v in items.items()]

    return make
