"""Energy-only training with EMPP (GEOM-Drug style data, mixed compositions) from the CLI."""

import csv
import json

import h5py
import numpy as np
from click.testing import CliRunner

from empp_ff.cli import main

from conftest import TINY_MODEL


def _geom_like(path, with_forces):
    """Three 'molecules' of different composition, a few conformers each (eV, Å)."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f.attrs["units"] = "positions: Angstrom; energy: eV; forces: eV/Angstrom"
        molecules = {"mol_a": [6, 6, 8, 1, 1, 1, 1], "mol_b": [6, 8, 1, 1, 1, 1], "mol_c": [7, 6, 6, 1, 1, 1, 1, 1]}
        for name, z in molecules.items():
            base = rng.uniform(-1.5, 1.5, size=(len(z), 3))
            conf = base[None] + 0.05 * rng.normal(size=(6, len(z), 3))
            g = f.create_group(name)
            g["atomic_numbers"] = np.array(z)
            g["positions"] = conf
            g["energy"] = -10.0 * len(z) + rng.normal(size=6)
            if with_forces:
                g["forces"] = rng.normal(size=conf.shape)


def test_energy_only_training_with_empp_energy_conditioning(tmp_path):
    data = tmp_path / "geom_like.h5"
    _geom_like(data, with_forces=True)  # forces present in the file but ignored (energy_only)
    run_dir = tmp_path / "run"
    sets = {
        "run_dir": run_dir, "data.path": data, "data.energy_only": True,
        "data.n_train": 10, "data.n_val": 4, "data.n_test": 4,
        "train.max_epochs": 1, "train.batch_size": 4, "train.progress": False, "train.tensorboard": False,
        "empp.enabled": True, "empp.use_force_label": False, "empp.weight": 1.0,
        "empp.pretrained": "null",
        **{f"model.{k}": v for k, v in TINY_MODEL.items()},
    }
    args = ["train"] + [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    row = next(csv.DictReader((run_dir / "metrics.csv").open()))
    assert float(row["empp_loss"]) > 0 and float(row["val_energy_mae_mev"]) > 0
    assert row["val_forces_mae_mev_per_a"] == "nan" and float(row["train_forces_loss"]) == 0.0
    stats = json.loads((run_dir / "statistics.json").read_text())
    assert stats["species"] == [1, 6, 7, 8]
    test = json.loads((run_dir / "test_metrics.json").read_text())
    assert np.isfinite(test["energy_mae_mev"]) and not np.isfinite(test["forces_mae_mev_per_a"])
