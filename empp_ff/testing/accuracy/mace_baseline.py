"""The mace-torch baseline cell: ``mace_run_train`` with its own defaults, on the same split.

The split is made by empp-ff's ``make_splits`` with the cell's sizes and seed (what
``empp-ff train`` does with ``data.split_seed`` unset), written as extended XYZ in eV
and eV/Å. The architecture, batch size and epochs are the demo config's; everything
else (loss weights 1/100, Adam with AMSGrad at lr 0.01, ReduceLROnPlateau, E0s by
least squares, best-validation checkpoint, no EMA) is mace_run_train's default.
Test errors are read from mace's own TEST error table (TotalMAE: total-energy MAE in
meV, force-component MAE in meV/Å, the same definitions as empp-ff's).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Dict, List

import numpy as np
from ase import units

KCAL_PER_MOL_IN_EV = units.kcal / units.mol  # 0.04336410390059322, as the MD17 reader's

# The demo architecture (empp_ff.train.demo_config.DEMO_CONFIG) in mace_run_train's flags.
DEMO_ARCHITECTURE = [
    "--model", "MACE", "--num_channels", "32", "--max_L", "1", "--correlation", "2",
    "--num_interactions", "2", "--radial_MLP", "[32,32]", "--MLP_irreps", "16x0e",
    "--num_radial_basis", "8", "--num_cutoff_basis", "5", "--max_ell", "3", "--r_max", "5.0",
    "--batch_size", "5", "--valid_batch_size", "10",
]


def write_split_xyz(source: Path, cell, out: Path) -> Dict[str, Path]:
    from ase import Atoms
    from ase.io import write

    from empp_ff.data.splits import make_splits

    data = np.load(source)
    z, positions = data["z"], data["R"]
    energies = data["E"].reshape(-1) * KCAL_PER_MOL_IN_EV
    forces = data["F"] * KCAL_PER_MOL_IN_EV
    splits = make_splits(len(positions), cell.n_train, cell.n_val, cell.n_test, seed=cell.seed)
    paths = {}
    for name, idx in splits.items():
        frames = []
        for i in idx:
            atoms = Atoms(numbers=z, positions=positions[i])
            atoms.info["REF_energy"] = float(energies[i])
            atoms.arrays["REF_forces"] = np.array(forces[i])
            frames.append(atoms)
        paths[name] = out / f"{name}.xyz"
        write(paths[name], frames, format="extxyz")
    return paths


_EPOCH_LINE = re.compile(
    r"^(\S+ \S+) INFO: Epoch (\d+): .*MAE_E=\s*([\d.]+) meV, MAE_F=\s*([\d.]+) meV / A")
_TEST_ROW = re.compile(r"^\|\s*Default_Default\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|")


def parse_log(text: str) -> Dict[str, object]:
    curve: List[Dict[str, float]] = []
    start = None
    test = None
    in_test = False
    for line in text.splitlines():
        stamp = re.match(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) INFO", line)
        if stamp and start is None:
            start = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S.%f")
        m = _EPOCH_LINE.match(line)
        if m:
            t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f")
            curve.append({"epoch": int(m.group(2)) + 1, "wall_time_s": (t - start).total_seconds(),
                          "val_energy_mae_mev": float(m.group(3)), "val_forces_mae_mev_per_a": float(m.group(4))})
        if "Error-table on TEST" in line:
            in_test = True
        row = _TEST_ROW.match(line)
        if in_test and row:
            test = (float(row.group(1)), float(row.group(2)))
    if test is None:
        raise RuntimeError("no TEST error table in the mace_run_train log")
    return {"curve": curve, "test_energy_mae_mev": test[0], "test_forces_mae_mev_per_a": test[1]}


def run_mace_cell(cell, data_dir: Path, out: Path) -> Dict[str, object]:
    paths = write_split_xyz(Path(data_dir) / f"md17_{cell.molecule}.npz", cell, out)
    cmd = ["mace_run_train", "--name", "mace", "--work_dir", str(out / "mace"),
           "--train_file", str(paths["train"]), "--valid_file", str(paths["val"]),
           "--test_file", str(paths["test"]), "--energy_key", "REF_energy", "--forces_key", "REF_forces",
           "--E0s", "average", *DEMO_ARCHITECTURE, "--max_num_epochs", str(cell.epochs),
           "--device", "cpu", "--default_dtype", "float32", "--seed", str(cell.seed),
           "--error_table", "TotalMAE"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log_path = out / "mace.log"
    start = time.perf_counter()
    load = os.getloadavg()[0]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{cell.name}: mace_run_train exited {code}; see {log_path}")
    parsed = parse_log(log_path.read_text())
    for p in paths.values():  # the split is reproducible from the seed; keep the cell small
        p.unlink()
    return {"command": " ".join(shlex.quote(c) for c in cmd), **parsed,
            "wall_time_s": wall, "cpu_time_s": usage.ru_utime + usage.ru_stime, "load_average_at_start": load,
            "mace_version": _mace_version()}


def _mace_version() -> str:
    from importlib.metadata import version

    return version("mace-torch")


if __name__ == "__main__":  # parse a finished log: python -m empp_ff.testing.accuracy.mace_baseline mace.log
    import sys

    print(json.dumps(parse_log(Path(sys.argv[1]).read_text()), indent=1))
