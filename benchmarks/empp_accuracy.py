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
cell under ``--work``. The cells, variants, runs and the report are package code
(``empp_ff.testing.accuracy``), shared with ``empp_generalisation.py``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

from empp_ff.testing.accuracy.cells import Cell
from empp_ff.testing.accuracy.report import write_report
from empp_ff.testing.accuracy.runner import TWO_STAGE, known_variants, run_cells
from empp_ff.testing.benchmarking import cpu_model

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data"


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
