"""EMPP judged at convergence (issue 25): every variant trained to its own early stop,
on both metrics (test MAE of best.pt and MD stability), molecule-level intervals.

Cells are (set, molecule, labelled frames, variant, seed). Each is one ``empp-ff train``
run (one thread) with early stopping and the plateau schedule, then ``empp-ff export``
and ``empp-ff stability`` of the exported model against the molecule's trajectory. A
cell's result is one JSON file in ``--results`` (test errors, best epoch, epochs run,
wall and CPU time, the validation learning curve, stability, machine and load);
finished cells are skipped, an interrupted cell's training resumes (same command), so
the study survives a machine change as long as the JSON files are committed
(``--commit`` commits each one as it lands, only that file).

    python benchmarks/empp_converged.py run --set design --molecules ethanol uracil \\
        --frames 50 --seeds 1 2 3 --variants no_empp aux_w1 start --work runs/converged --commit
    python benchmarks/empp_converged.py report --set design --frames 50 \\
        --out benchmarks/results/empp_converged_design_cpu

``--source DIR`` runs the cells with the package in DIR (a frozen snapshot, e.g. a
``git worktree`` of the commit that started the study), so that edits landing during
the study cannot change cells half-way.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

from empp_ff.testing.benchmarking import machine_info

HERE = Path(__file__).resolve().parent
SPLIT = json.loads((HERE / "empp_split.json").read_text())
DATA_DIRS = {"design": HERE.parent.parent / "shared" / "data", "report": HERE / "data"}
SET_KEYS = {"design": "design", "report": "converged_report"}  # the molecules of each set in SPLIT

#: Training settings of every cell: the demo architecture (MACE, 32 channels), trained to
#: its own early stop. The plateau halves the rate after 10 epochs without a better
#: validation metric; the run stops when 100 epochs together bought less than 1 % (or at
#: the 1000-epoch cap, flagged). (EMPP_PROTOCOL.md, Converged, amendment 2.)
COMMON = {
    "train.batch_size": 5, "train.lr": 0.01, "train.warmup_epochs": 1.0, "train.threads": 1,
    "train.scheduler": "plateau", "train.plateau_patience": 10, "train.plateau_factor": 0.5,
    "train.patience": 100, "train.max_epochs": 1000, "train.min_improvement": 0.01,  # amendment 2
    "train.plateau_min_improvement": 0.0,
    "train.progress": False, "train.tensorboard": False,
    "data.n_val": 50, "data.n_test": 500,
}
_NO_START = {"empp.pretrained": "null", "empp.pretrained_reinit": "[]"}
_START = {"empp.enabled": True, "empp.pretrained": "geom-drugs-demo", "empp.pretrained_reinit": "[elements]"}
VARIANTS: Dict[str, Dict[str, object]] = {
    "no_empp": {"empp.enabled": False, **_NO_START},
    "aux_w0.1": {"empp.enabled": True, "empp.weight": 0.1, **_NO_START},
    "aux_w1": {"empp.enabled": True, "empp.weight": 1.0, **_NO_START},
    "aux_w10": {"empp.enabled": True, "empp.weight": 10.0, **_NO_START},
    "start": {**_START, "empp.weight": 0.0},
    "start_aux_w1": {**_START, "empp.weight": 1.0},
    # amendment 2: the start, with EMPP replay of the pre-training corpus during fine-tuning
    "start_replay": {**_START, "empp.weight": 0.0, "empp.replay_weight": 1.0,
                     "empp.replay_data": str(DATA_DIRS["design"] / "geom_drugs_xtb.h5")},
}


def cell_name(molecule: str, frames: int, variant: str, seed: int) -> str:
    return f"{molecule}_n{frames}_{variant}_s{seed}"


def _cli(args: List[str], source: Path | None, log: Path) -> float:
    """Run ``empp-ff ARGS`` on one thread; returns its CPU seconds (raises on failure)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if source is not None:
        env["PYTHONPATH"] = str(source) + os.pathsep + env.get("PYTHONPATH", "")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with log.open("a") as out:
        # cwd: the log's folder, not a checkout (python -m puts the cwd first on sys.path)
        code = subprocess.call([sys.executable, "-m", "empp_ff.cli", *args], stdout=out, stderr=subprocess.STDOUT,
                               env=env, cwd=log.parent)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        raise RuntimeError(f"empp-ff {args[0]} failed (exit {code}); see {log}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _curve(run_dir: Path) -> List[Dict[str, float]]:
    keep = ("epoch", "lr", "val_forces_mae_mev_per_a", "val_energy_mae_mev", "val_weighted_mae", "wall_time_s")
    with (run_dir / "metrics.csv").open() as fh:
        return [{k: float(row[k]) for k in keep if row.get(k) not in (None, "")} for row in csv.DictReader(fh)]


def run_cell(which: str, molecule: str, frames: int, variant: str, seed: int, args) -> Path:
    name = cell_name(molecule, frames, variant, seed)
    result_path = Path(args.results) / which / f"{name}.json"
    if result_path.exists():
        return result_path
    data = (DATA_DIRS[which] / f"md17_{molecule}.npz").resolve()
    run_dir = (Path(args.work) / which / name).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir.parent / f"{name}.log"
    sets = {**COMMON, **VARIANTS[variant], "seed": seed, "data.path": str(data), "data.n_train": frames,
            "run_dir": str(run_dir)}
    machine = machine_info()
    start = time.time()
    train_cpu = _cli(["train", "--set", *[f"{k}={v}" for k, v in sets.items()]], args.source, log)
    train_wall = time.time() - start
    model = run_dir / "model.pt"
    _cli(["export", str(run_dir), "-o", str(model)], args.source, log)
    stability_json = run_dir / "stability.json"
    start = time.time()
    with log.open("a") as out:
        env = dict(os.environ, OMP_NUM_THREADS="1")
        if args.source is not None:
            env["PYTHONPATH"] = str(args.source)
        proc = subprocess.run([sys.executable, "-m", "empp_ff.cli", "stability", str(model), str(data), "--json",
                               "--no-progress", "--runs", str(args.stability_runs), "--time",
                               str(args.stability_ps), "--seed", str(seed), "--plot",
                               str(run_dir / "stability.png")], capture_output=True, text=True, env=env,
                              cwd=run_dir)
        out.write(proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"stability failed for {name}: {proc.stderr.strip().splitlines()[-1:]}")
    stability_json.write_text(proc.stdout)
    stability = json.loads(proc.stdout)
    stability.pop("model", None), stability.pop("reference", None), stability.pop("plot", None)
    test = json.loads((run_dir / "test_metrics.json").read_text())
    result = {
        "set": which, "molecule": molecule, "frames": frames, "variant": variant, "seed": seed,
        "settings": sets | {"run_dir": None, "data.path": str(data.relative_to(data.parents[1]))},
        "test": {k: test[k] for k in ("energy_mae_mev", "energy_per_atom_mae_mev", "forces_mae_mev_per_a",
                                      "forces_rmse_mev_per_a", "energy_rmse_mev") if k in test},
        "best_epoch": test["best_epoch"], "last_improvement_epoch": test.get("last_improvement_epoch"),
        "epochs_run": test["epochs_run"], "stopped_by": test["stopped_by"],
        "converged": test["converged"], "train_wall_s": round(train_wall, 1), "train_cpu_s": round(train_cpu, 1),
        "stability": stability, "stability_wall_s": round(time.time() - start, 1),
        "curve": _curve(run_dir), "machine": machine, "source": str(args.source or "installed package"),
    }
    result_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = result_path.with_suffix(".json.part")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(result_path)
    if args.commit:
        _commit(result_path, f"Converged study cell {which}/{name}: forces {result['test'].get('forces_mae_mev_per_a', 0):.1f} "
                             f"meV/A, best epoch {result['best_epoch']} of {result['epochs_run']}, median stable "
                             f"{stability['stable_ps_median']:.1f} ps")
    return result_path


def _commit(path: Path, message: str) -> None:
    """Commit ``path`` alone (other staged files stay out), retrying while the index is locked."""
    root = HERE.parent
    for _ in range(20):
        add = subprocess.run(["git", "add", str(path)], cwd=root, capture_output=True, text=True)
        if add.returncode == 0:
            done = subprocess.run(["git", "commit", "-q", "-m", message, "--", str(path)], cwd=root,
                                  capture_output=True, text=True)
            if done.returncode == 0:
                return
        time.sleep(5)
    print(f"could not commit {path}; it is on disk", file=sys.stderr)


def cmd_run(args) -> None:
    molecules = args.molecules or list(SPLIT[SET_KEYS[args.set]]["molecules"])
    for frames in args.frames:
        for seed in args.seeds:
            for molecule in molecules:
                for variant in args.variants:
                    if variant not in VARIANTS:
                        raise SystemExit(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
                    t0 = time.time()
                    path = run_cell(args.set, molecule, frames, variant, seed, args)
                    print(f"{path.name}: {time.time() - t0:.0f} s", flush=True)


# --------------------------------------------------------------------------- report
def load_cells(results: Path, which: str) -> List[dict]:
    return [json.loads(p.read_text()) for p in sorted((results / which).glob("*.json"))]


def _molecule_ratios(cells: List[dict], frames: int, variant: str, baseline: str) -> Dict[str, Dict[str, float]]:
    """Per molecule, the geometric mean over seeds of variant/baseline (forces, energies,
    median stable time), over the seeds where both runs converged."""
    import math

    by_key = {(c["molecule"], c["seed"], c["variant"]): c for c in cells if c["frames"] == frames}
    out: Dict[str, Dict[str, float]] = {}
    for (molecule, seed, v), cell in by_key.items():
        base = by_key.get((molecule, seed, baseline))
        if v != variant or base is None or not (cell["converged"] and base["converged"]):
            continue
        logs = out.setdefault(molecule, {"F": [], "E": [], "T": [], "seeds": []})
        logs["F"].append(math.log(cell["test"]["forces_mae_mev_per_a"] / base["test"]["forces_mae_mev_per_a"]))
        logs["E"].append(math.log(cell["test"]["energy_mae_mev"] / base["test"]["energy_mae_mev"]))
        stable = [max(0.1, c["stability"]["stable_ps_median"]) for c in (cell, base)]
        logs["T"].append(math.log(stable[0] / stable[1]))
        logs["seeds"].append(seed)
    return {m: {k: (math.exp(sum(v) / len(v)) if k != "seeds" else v) for k, v in d.items()} for m, d in out.items()}


def _fmt(interval: Dict[str, float]) -> str:
    import math

    if interval["n"] == 0:
        return "–"
    if interval["n"] == 1 or math.isnan(interval["low"]):
        return f"{interval['ratio']:.3f} (1 molecule)"
    return f"{interval['ratio']:.3f} [{interval['low']:.3f}, {interval['high']:.3f}]"


def cmd_report(args) -> None:
    from empp_ff.testing.benchmarking import ratio_interval

    results = Path(args.results)
    cells = load_cells(results, args.set)
    if not cells:
        raise SystemExit(f"no cells in {results / args.set}")
    lines = [f"# EMPP at convergence, {args.set} set (issue 25)", "",
             "Generated by `python benchmarks/empp_converged.py report` from the cell files in "
             f"`benchmarks/results/converged/{args.set}/` (protocol: `EMPP_PROTOCOL.md`, section Converged). "
             "Ratios: variant / `no_empp` on the same split and seed; per molecule the geometric mean over "
             "seeds; over molecules the geometric mean with a 95 % t-interval over molecules. Cells that hit "
             "the epoch cap are not converged and are left out of every ratio.", ""]
    summary = {}
    for frames in sorted({c["frames"] for c in cells}):
        variants = sorted({c["variant"] for c in cells if c["frames"] == frames} - {"no_empp"})
        lines += [f"## {frames} labelled frames", "",
                  "| variant | molecules (seeds) | forces | energies | median stable time |", "|---|---|---|---|---|"]
        for variant in variants:
            per_mol = _molecule_ratios(cells, frames, variant, "no_empp")
            row = {k: ratio_interval([m[k] for m in per_mol.values()]) for k in ("F", "E", "T")}
            summary[f"{frames}/{variant}"] = {"per_molecule": per_mol, **row}
            seeds = ", ".join(f"{m} ({len(d['seeds'])})" for m, d in sorted(per_mol.items()))
            lines.append(f"| {variant} | {seeds or '–'} | {_fmt(row['F'])} | {_fmt(row['E'])} | {_fmt(row['T'])} |")
        lines.append("")
    lines += ["## Every cell", "",
              "| molecule | frames | variant | seed | forces MAE (meV/Å) | energy MAE (meV) | best epoch / run | "
              "stopped by | stable ps (median; collapsed) | h(r) MAE | train CPU s | load |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in sorted(cells, key=lambda c: (c["frames"], c["molecule"], c["variant"], c["seed"])):
        st = c["stability"]
        lines.append(f"| {c['molecule']} | {c['frames']} | {c['variant']} | {c['seed']} | "
                     f"{c['test']['forces_mae_mev_per_a']:.1f} | {c['test']['energy_mae_mev']:.1f} | "
                     f"{c['best_epoch']} / {c['epochs_run']} | {c['stopped_by']} | "
                     f"{st['stable_ps_median']:.1f}; {st['n_collapsed']}/{st['runs']} | {st['hr_mae']:.3f} | "
                     f"{c['train_cpu_s']:.0f} | {c['machine']['load_1min']} |")
    machine = cells[-1]["machine"]
    lines += ["", f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}; one thread "
              "per run; the load column is the 1-minute load average when the cell started (other jobs ran "
              "beside the study: wall times are noisy, CPU times and errors are not).", "",
              f"Learning curves: `{Path(args.out).name}_curves.png`."]
    out = Path(args.out)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    _plot_curves(cells, out.parent / f"{out.name}_curves.png")
    print(f"wrote {out.with_suffix('.md')}")


def _plot_curves(cells: List[dict], path: Path) -> None:
    """Validation force MAE against epoch, one panel per (molecule, frames), seed 1 (or the lowest)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = sorted({(c["molecule"], c["frames"]) for c in cells})
    fig = Figure(figsize=(4.2 * len(panels), 3.8), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (molecule, frames) in zip(axes, panels):
        mine = [c for c in cells if c["molecule"] == molecule and c["frames"] == frames]
        seed = min(c["seed"] for c in mine)
        for c in sorted((c for c in mine if c["seed"] == seed), key=lambda c: c["variant"]):
            epochs = [r["epoch"] for r in c["curve"]]
            ax.plot(epochs, [r["val_forces_mae_mev_per_a"] for r in c["curve"]], lw=0.9, label=c["variant"])
            ax.axvline(c["best_epoch"], lw=0.4, ls=":", color=ax.lines[-1].get_color())
        ax.set_yscale("log")
        ax.set_title(f"{molecule}, {frames} frames, seed {seed}", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation force MAE (meV/Å)")
        ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, format="png")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("--set", choices=("design", "report"), default="design")
    run.add_argument("--molecules", nargs="*")
    run.add_argument("--frames", nargs="+", type=int, default=[50])
    run.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    run.add_argument("--variants", nargs="+", default=["no_empp", "start"])
    run.add_argument("--work", default="runs/converged")
    run.add_argument("--results", default=str(HERE / "results" / "converged_v3"))
    run.add_argument("--source", type=Path, default=None)
    run.add_argument("--stability-runs", type=int, default=5)
    run.add_argument("--stability-ps", type=float, default=10.0)
    run.add_argument("--commit", action="store_true")
    report = sub.add_parser("report")
    report.add_argument("--set", choices=("design", "report"), default="design")
    report.add_argument("--results", default=str(HERE / "results" / "converged_v3"))
    report.add_argument("--out", default=str(HERE / "results" / "empp_converged_design_cpu"))
    args = parser.parse_args(argv)
    if args.command == "run":
        cmd_run(args)
    else:
        cmd_report(args)


if __name__ == "__main__":
    main()
