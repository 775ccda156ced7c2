"""Does EMPP help on molecules it has never seen? The design/report study (issue 17).

The molecules are split once, in ``empp_split.json`` (see ``EMPP_PROTOCOL.md``): recipes
are chosen on the *design* set (``../shared/data``), the *report* set
(``benchmarks/data``, generated here) is run once with the chosen recipe. Cells are those
of ``empp_accuracy.py`` (same variants, same one-thread ``empp-ff train`` runs, resumable);
this script picks the molecules and data of a set, and reports paired ratios with 95 %
intervals (``empp_ff.testing.accuracy.generalisation``).

    python benchmarks/empp_generalisation.py run --set design --regimes 50x3 \\
        --variants no_empp empp_pretrained --work runs/gen_design
    python benchmarks/empp_generalisation.py report --work runs/gen_design runs/gen_report \\
        --out benchmarks/results/empp_generalisation_cpu

The long regime (950 labelled frames, hundreds of epochs; validation curves are read
from the runs' metrics.csv, so a run still in progress is plotted too):

    python benchmarks/empp_generalisation.py long --molecules paracetamol --epochs 300 --seeds 1 \\
        --work runs/gen_long                                             # CPU, 32 channels
    python benchmarks/empp_generalisation.py long --gpu --work runs/gen_long_gpu   # the paper regime
    python benchmarks/empp_generalisation.py plot-long --work runs/gen_long --out benchmarks/results/empp_long_cpu

``--gpu`` is the paper regime on a CUDA machine: the four report molecules, 64 channels,
1000 epochs, 3 seeds, ``train.device=cuda`` (one job per cell, ``--jobs`` of them at once).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List

from empp_ff.testing.accuracy.cells import Cell, all_results
from empp_ff.testing.accuracy.generalisation import plot_long, write_report
from empp_ff.testing.accuracy.runner import known_variants, parse_extra_variant, run_cells

HERE = Path(__file__).resolve().parent
SPLIT = json.loads((HERE / "empp_split.json").read_text())
DATA_DIRS = {"design": HERE.parent.parent / "shared" / "data", "report": HERE / "data"}
GPU_PRESET = {"epochs": 1000, "seeds": 3, "common": ["model.num_channels=64", "train.device=cuda"]}


def molecules_of(which: str) -> List[str]:
    return list(SPLIT[which]["molecules"])


def _variants(args) -> Dict[str, Dict[str, object]]:
    common = dict(parse_extra_variant("common:" + ",".join(args.common or []))[1])
    variants = known_variants(args.variant, args.variants)
    bad = [v for v in args.variants if variants[v] is None or v.startswith("pretrain_")]
    if bad:
        raise SystemExit(f"variants {bad} are not single empp-ff runs; use empp_accuracy.py for them")
    return {name: {**common, **variants[name]} for name in args.variants}


def _run_cells(cells: List[Cell], variants, data_dir: Path, work: Path, jobs: int) -> None:
    work.mkdir(parents=True, exist_ok=True)
    grid = work / "grid.json"  # the variants of every run into this work directory
    known = json.loads(grid.read_text()).get("variants", {}) if grid.is_file() else {}
    grid.write_text(json.dumps({"variants": {**known, **variants}, "data_dir": str(data_dir)}, indent=1,
                               default=str) + "\n")
    run_cells(cells, variants, data_dir, work, jobs)


def command_run(args) -> None:
    molecules = args.molecules or molecules_of(args.set)
    outside = sorted(set(molecules) - set(molecules_of(args.set)))
    if outside:
        raise SystemExit(f"{outside} are not {args.set} molecules (benchmarks/empp_split.json)")
    variants = _variants(args)
    cells = []
    for molecule in molecules:
        for item in args.regimes:
            n_train, _, seeds = item.partition("x")
            for seed in range(1, int(seeds or 1) + 1):
                cells += [Cell(molecule, int(n_train), seed, v, args.epochs) for v in args.variants]
    _run_cells(cells, variants, DATA_DIRS[args.set], Path(args.work), args.jobs)


def command_long(args) -> None:
    if args.gpu:
        args.epochs, args.seeds = GPU_PRESET["epochs"], GPU_PRESET["seeds"]
        args.common = GPU_PRESET["common"] + list(args.common or [])
    molecules = args.molecules or molecules_of("report")
    variants = _variants(args)
    cells = [Cell(m, args.n_train, seed, v, args.epochs) for m in molecules for seed in range(1, args.seeds + 1)
             for v in args.variants]
    _run_cells(cells, variants, DATA_DIRS["report"], Path(args.work), args.jobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "long"):
        p = sub.add_parser(name)
        p.add_argument("--molecules", nargs="+", help="a subset of the set's molecules")
        p.add_argument("--variants", nargs="+", default=["no_empp", "empp", "empp_pretrained"])
        p.add_argument("--variant", action="append", help="NAME:key=value,key=value (ad hoc variant)")
        p.add_argument("--common", nargs="*", help="key=value overrides for every cell (e.g. model.num_channels=64)")
        p.add_argument("--jobs", type=int, default=2)
        p.add_argument("--work", required=True)
    run = sub.choices["run"]
    run.add_argument("--set", choices=("design", "report"), required=True)
    run.add_argument("--regimes", nargs="+", default=["50x3"], help="N_TRAINxN_SEEDS")
    run.add_argument("--epochs", type=int, default=20)
    long = sub.choices["long"]
    long.add_argument("--n-train", type=int, default=950)
    long.add_argument("--epochs", type=int, default=300)
    long.add_argument("--seeds", type=int, default=1)
    long.add_argument("--gpu", action="store_true", help="the paper regime: 64 channels, 1000 epochs, 3 seeds, CUDA")
    report = sub.add_parser("report")
    report.add_argument("--work", nargs="+", required=True)
    report.add_argument("--out", required=True)
    report.add_argument("--baseline", default="no_empp")
    plot = sub.add_parser("plot-long")
    plot.add_argument("--work", required=True)
    plot.add_argument("--out", required=True)
    plot.add_argument("--baseline", default="no_empp")
    args = parser.parse_args()
    if args.command == "run":
        command_run(args)
    elif args.command == "long":
        command_long(args)
    elif args.command == "report":
        sets = {m: s for s in ("design", "report") for m in molecules_of(s)}
        results = [r for w in args.work for r in all_results(Path(w))]
        write_report(results, sets, Path(args.out), args.baseline)
    else:
        plot_long(Path(args.work), Path(args.out), args.baseline)


if __name__ == "__main__":
    main()
