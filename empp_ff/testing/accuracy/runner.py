"""How a cell of the accuracy studies is trained: the variants (overrides of the demo config,
the mace-torch baseline, two-stage pre-training cells) and the runs, one ``empp-ff train``
per cell on one thread, as parallel jobs; a cell counts as done once its ``result.json``
is written, so an interrupted grid resumes where it stopped."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional

from empp_ff.testing.accuracy.cells import Cell, cell_dir, read_result
from empp_ff.testing.accuracy.mace_baseline import run_mace_cell
from empp_ff.testing.accuracy.two_stage import run_two_stage_cell

# Overrides on top of the demo config (the config `empp-ff train` uses without a file).
# ``empp`` is the demo config as shipped (the EMPP auxiliary loss, λ = 1, n = 1, from
# random weights); ``empp_pretrained`` starts from the bundled EMPP-pre-trained backbone
# (empp.pretrained: geom-drugs-demo) without the auxiliary loss (empp.weight 0);
# ``empp_pretrained_aux`` is that start plus the auxiliary loss.
VARIANTS: Dict[str, Optional[Dict[str, object]]] = {
    "no_empp": {"empp.enabled": False},
    "empp": {"empp.enabled": True, "empp.pretrained": None, "empp.weight": 1.0},
    "empp_pretrained": {"empp.enabled": True, "empp.pretrained": "geom-drugs-demo", "empp.weight": 0.0},
    "empp_pretrained_aux": {"empp.enabled": True, "empp.pretrained": "geom-drugs-demo", "empp.weight": 1.0},
    "denoise": {"empp.enabled": False, "aux.denoise.enabled": True},
    "empp_paper": {"empp.enabled": True, "empp.pretrained": None, "empp.num_masks": 1, "empp.weight": 50.0,
                   "empp.schedule": "constant", "empp.grad_balance": None, "empp.batch_fraction": 1.0},
    "mace": None,  # mace_run_train, see mace_baseline.py
    "pretrain_no_empp": {},  # two stages, see TWO_STAGE
    "pretrain_empp": {},
}

# EMPP pre-training on 1000 unlabelled frames of the trajectory (the cell's training
# structures and others, never its val/test frames) for 4 epochs, then the supervised
# demo config without / with EMPP, started from the pre-trained weights (two_stage.py).
_PRETRAIN = {"train.max_epochs": 4, "data.n_val": 50}
TWO_STAGE = {
    "pretrain_no_empp": {"frames": 1000, "pretrain": _PRETRAIN, "finetune": {"empp.enabled": False}},
    "pretrain_empp": {"frames": 1000, "pretrain": _PRETRAIN, "finetune": {"empp.enabled": True, "empp.weight": 1.0}},
}


def parse_extra_variant(text: str) -> tuple:
    """``NAME:key=value,key=value`` -> (NAME, {key: value}) (values stay text: ``--set`` reads them)."""
    name, _, body = text.partition(":")
    overrides: Dict[str, object] = {}
    for pair in filter(None, body.split(",")):
        key, _, value = pair.partition("=")
        overrides[key.strip()] = value.strip()
    return name, overrides


def _format_value(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _wait_with_usage(proc: subprocess.Popen) -> tuple:
    """(returncode, user+system CPU seconds of the child)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime


def run_empp_ff_cell(cell: Cell, overrides: Dict[str, object], data_dir: Path, base: Path,
                     test_metrics: bool = True) -> Dict[str, object]:
    """One ``empp-ff train`` in ``base`` (``base/run``, ``base/train.log``)."""
    run_dir = Path(base) / "run"
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    settings = {
        "run_dir": run_dir, "seed": cell.seed,
        "data.path": data_dir / f"md17_{cell.molecule}.npz",
        "data.n_train": cell.n_train, "data.n_val": cell.n_val, "data.n_test": cell.n_test,
        "train.max_epochs": cell.epochs, "train.threads": 1,
        "train.progress": False, "train.tensorboard": False,
        **overrides,
    }
    cmd = ["empp-ff", "train"]
    for key, value in settings.items():
        cmd += ["--set", f"{key}={_format_value(value)}"]
    log_path = Path(base) / "train.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    load = os.getloadavg()[0]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        code, cpu = _wait_with_usage(proc)
    wall = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"{cell.name}: empp-ff train exited {code}; see {log_path}")
    result = {"command": " ".join(shlex.quote(str(c)) for c in cmd),
              "wall_time_s": wall, "cpu_time_s": cpu, "load_average_at_start": load}
    if not test_metrics:
        return result
    test = json.loads((run_dir / "test_metrics.json").read_text())
    result.update({
        "test_energy_mae_mev": test["energy_mae_mev"],
        "test_forces_mae_mev_per_a": test["forces_mae_mev_per_a"],
        "test_energy_rmse_mev": test.get("energy_rmse_mev"),
        "test_forces_rmse_mev_per_a": test.get("forces_rmse_mev_per_a"),
        "test_energy_mean_error_mev": test.get("energy_mean_error_mev"),
        "best_epoch": test.get("epoch"),
        "curve": _curve_from_metrics(run_dir / "metrics.csv"),
    })
    return result


def _curve_from_metrics(path: Path) -> List[Dict[str, float]]:
    import csv

    rows = []
    with open(path) as fh:
        for row in csv.DictReader(fh):
            rows.append({
                "epoch": int(row["epoch"]), "wall_time_s": float(row["wall_time_s"]),
                "val_energy_mae_mev": float(row["val_energy_mae_mev"]),
                "val_forces_mae_mev_per_a": float(row["val_forces_mae_mev_per_a"]),
            })
    return rows


def run_cell(cell: Cell, variants: Dict[str, Optional[Dict[str, object]]], data_dir: Path, work: Path) -> str:
    out = cell_dir(work, cell)
    if read_result(out) is not None:
        return f"skip {cell.name} (done)"
    out.mkdir(parents=True, exist_ok=True)
    if variants[cell.variant] is None:
        result = run_mace_cell(cell, data_dir, out)
    elif cell.variant in TWO_STAGE:
        result = run_two_stage_cell(cell, TWO_STAGE[cell.variant], data_dir, out, run_empp_ff_cell)
    else:
        result = run_empp_ff_cell(cell, variants[cell.variant], data_dir, out)
    result.update(cell.as_dict())
    tmp = out / "result.json.tmp"
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, out / "result.json")  # a cell counts as done only once complete
    return (f"done {cell.name}: F {result['test_forces_mae_mev_per_a']:.1f} meV/Å, "
            f"E {result['test_energy_mae_mev']:.1f} meV, {result['cpu_time_s']:.0f} s CPU")


def known_variants(extra_texts: Optional[List[str]], wanted: List[str]) -> Dict[str, Optional[Dict[str, object]]]:
    """VARIANTS plus the ad hoc ``NAME:key=value,...`` ones; an unknown wanted name is an error."""
    variants = dict(VARIANTS)
    for text in extra_texts or []:
        name, overrides = parse_extra_variant(text)
        variants[name] = overrides
    unknown = [v for v in wanted if v not in variants]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {sorted(variants)}")
    return variants


def run_cells(cells: List[Cell], variants, data_dir: Path, work: Path, jobs: int) -> None:
    """Train ``cells`` as ``jobs`` parallel one-thread runs; a failed cell is reported, not fatal."""
    print(f"{len(cells)} cells, {jobs} parallel one-thread jobs", flush=True)

    def one(cell):
        try:
            msg = run_cell(cell, variants, Path(data_dir), work)
        except Exception as exc:  # one failed cell must not stop the grid
            msg = f"FAILED {cell.name}: {exc}"
        print(time.strftime("%H:%M:%S"), msg, flush=True)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(one, cells))


