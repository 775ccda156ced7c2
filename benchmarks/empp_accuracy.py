"""Does EMPP make a better force field? Test MAE of every variant on the same splits and epochs.

A *cell* is (molecule, training-set size, seed, variant). Every cell trains one force
field from scratch on a shared GFN2-xTB MD17-format file and records its test energy
and force MAE (500 held-out frames), its learning curve and its CPU and wall time.
All variants of one (molecule, size, seed) see the same train/val/test split and the
same number of epochs. Cells run as parallel one-thread jobs; a finished cell (its
``result.json`` exists) is skipped, so an interrupted grid resumes where it stopped.

Variants (``--variants``; ``--variant NAME:key=value,key=value`` adds one ad hoc):

* ``no_empp``     the demo config (README command (a)) with ``empp.enabled=false``
* ``empp``        the demo config as shipped (the EMPP auxiliary loss, λ = 1, n = 1)
* ``empp_pretrained``  the start from the bundled EMPP-pre-trained weights
                  (``empp.pretrained: geom-drugs-demo``), no auxiliary loss (weight 0)
* ``empp_pretrained_aux``  the same start plus the EMPP auxiliary loss, λ = 1
* ``denoise``     the demo config with EMPP off and the coordinate-denoising auxiliary on
* ``empp_paper``  the paper's MD17 settings: constant λ = 50, n = 1, no schedule
* ``mace``        ``mace_run_train`` (mace-torch's own trainer, its defaults) with the
                  demo architecture, batch size, epochs, split and seed
* ``pretrain_no_empp`` / ``pretrain_empp``  two stages: EMPP self-supervised pre-training
                  on 1000 unlabelled frames of the trajectory (never a val/test frame),
                  then the supervised demo config without / with EMPP from those weights

    python benchmarks/empp_accuracy.py run --molecules aspirin uracil toluene ethanol naphthalene \
        --regimes 200x2 50x3 --epochs 20 --jobs 2
    python benchmarks/empp_accuracy.py report --out benchmarks/results/empp_accuracy_cpu

``report`` writes OUT.json, OUT.md and OUT_curves_<molecule>.png from every finished
cell under ``--work``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _accuracy_cells import Cell, cell_dir, read_result  # noqa: E402
from _accuracy_report import write_report  # noqa: E402
from _mace_baseline import run_mace_cell  # noqa: E402
from _pretrain_cell import run_two_stage_cell  # noqa: E402

from _machine import cpu_model  # noqa: E402

REPO = HERE.parent
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data"

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
    "mace": None,  # mace_run_train, see _mace_baseline.py
    "pretrain_no_empp": {},  # two stages, see TWO_STAGE
    "pretrain_empp": {},
}

# EMPP pre-training on 1000 unlabelled frames of the trajectory (the cell's training
# structures and others, never its val/test frames) for 4 epochs, then the supervised
# demo config without / with EMPP, started from the pre-trained weights (_pretrain_cell.py).
_PRETRAIN = {"train.max_epochs": 4, "data.n_val": 50}
TWO_STAGE = {
    "pretrain_no_empp": {"frames": 1000, "pretrain": _PRETRAIN, "finetune": {"empp.enabled": False}},
    "pretrain_empp": {"frames": 1000, "pretrain": _PRETRAIN, "finetune": {"empp.enabled": True, "empp.weight": 1.0}},
}


@dataclass
class GridSpec:
    molecules: List[str]
    regimes: List[tuple]  # (n_train, n_seeds)
    variants: List[str]
    paper_molecules: List[str]
    epochs: int
    n_val: int
    n_test: int


def parse_regimes(items: List[str]) -> List[tuple]:
    out = []
    for item in items:
        n, _, seeds = item.partition("x")
        out.append((int(n), int(seeds or 1)))
    return out


def parse_extra_variant(text: str) -> tuple:
    name, _, body = text.partition(":")
    overrides: Dict[str, object] = {}
    for pair in filter(None, body.split(",")):
        key, _, value = pair.partition("=")
        overrides[key.strip()] = value.strip()
    return name, overrides


def cells_of(spec: GridSpec) -> List[Cell]:
    cells = []
    for molecule in spec.molecules:
        for n_train, n_seeds in spec.regimes:
            for seed in range(1, n_seeds + 1):
                for variant in spec.variants:
                    if variant == "empp_paper" and molecule not in spec.paper_molecules:
                        continue
                    cells.append(Cell(molecule, n_train, seed, variant, spec.epochs, spec.n_val, spec.n_test))
    return cells


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


def command_run(args) -> None:
    variants = known_variants(args.variant, args.variants)
    spec = GridSpec(args.molecules, parse_regimes(args.regimes), args.variants, args.paper_molecules or [],
                    args.epochs, args.n_val, args.n_test)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    grid_file = work / "grid.json"
    known = json.loads(grid_file.read_text()).get("variants", {}) if grid_file.is_file() else {}
    described = {k: TWO_STAGE.get(k, variants[k]) for k in args.variants}
    grid_file.write_text(json.dumps({  # the variants of every run into this work directory
        "variants": {**known, **described}, "machine": cpu_model(), "empp_ff": _empp_ff_origin(),
    }, indent=1, default=str) + "\n")
    run_cells(cells_of(spec), variants, Path(args.data_dir), work, args.jobs)


def _empp_ff_origin() -> Dict[str, str]:
    """Which empp-ff source tree (and git commit) the cells were trained with."""
    code = ("import empp_ff, os; print(os.path.dirname(os.path.dirname(empp_ff.__file__)))")
    root = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return {"source": root, "commit": commit, "dirty": bool(dirty)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train every unfinished cell")
    run.add_argument("--molecules", nargs="+", default=["aspirin", "uracil", "toluene"])
    run.add_argument("--regimes", nargs="+", default=["200x2", "50x3"], help="N_TRAINxN_SEEDS")
    run.add_argument("--variants", nargs="+",
                     default=["no_empp", "empp", "empp_pretrained", "denoise", "mace", "empp_paper"])
    run.add_argument("--variant", action="append", help="NAME:key=value,key=value (ad hoc variant)")
    run.add_argument("--paper-molecules", nargs="*", default=["aspirin"])
    run.add_argument("--epochs", type=int, default=20)
    run.add_argument("--n-val", type=int, default=50)
    run.add_argument("--n-test", type=int, default=500)
    run.add_argument("--jobs", type=int, default=2)
    run.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    run.add_argument("--work", default=str(REPO / "runs" / "bench_empp_accuracy"))
    report = sub.add_parser("report", help="summarise finished cells")
    report.add_argument("--work", default=str(REPO / "runs" / "bench_empp_accuracy"))
    report.add_argument("--out", default=str(HERE / "results" / "empp_accuracy_cpu"))
    report.add_argument("--baseline", default="no_empp")
    args = parser.parse_args()
    if args.command == "run":
        command_run(args)
    else:
        write_report(Path(args.work), Path(args.out), args.baseline)


if __name__ == "__main__":
    main()
