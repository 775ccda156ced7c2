"""Summary of the accuracy grid: mean ± std over seeds, ratios to the baseline, learning curves."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from statistics import mean, stdev
from typing import Dict, List

from empp_ff.testing.accuracy.cells import all_results
from empp_ff.testing.benchmarking import cpu_model

METRICS = (("test_forces_mae_mev_per_a", "F"), ("test_energy_mae_mev", "E"))


def _spread(values: List[float]) -> float:
    return stdev(values) if len(values) > 1 else float("nan")


def _interpolate(curve: List[Dict[str, float]], time_s: float, key: str) -> float:
    """Validation error reached by wall time ``time_s`` (last epoch finished by then)."""
    done = [row[key] for row in curve if row["wall_time_s"] <= time_s]
    return done[-1] if done else float("nan")


def group(results) -> Dict[tuple, List[dict]]:
    groups: Dict[tuple, List[dict]] = defaultdict(list)
    for r in results:
        groups[(r["molecule"], r["n_train"], r["epochs"], r["variant"])].append(r)
    return groups


def summarise(groups: Dict[tuple, List[dict]], baseline: str) -> List[dict]:
    rows = []
    for (molecule, n_train, epochs, variant), runs in sorted(groups.items()):
        base_runs = {r["seed"]: r for r in groups.get((molecule, n_train, epochs, baseline), [])}
        row = {"molecule": molecule, "n_train": n_train, "epochs": epochs, "variant": variant,
               "seeds": sorted(r["seed"] for r in runs),
               "cpu_time_s": mean(r["cpu_time_s"] for r in runs)}
        for key, short in METRICS:
            values = [r[key] for r in runs]
            row[f"{short}_mean"], row[f"{short}_std"] = mean(values), _spread(values)
            paired = [r[key] / base_runs[r["seed"]][key] for r in runs if r["seed"] in base_runs]
            row[f"{short}_ratio"] = mean(paired) if paired else float("nan")
            row[f"{short}_paired"] = paired
        if base_runs:
            budget = mean(r["curve"][-1]["wall_time_s"] for r in base_runs.values())
            at_budget = [_interpolate(r["curve"], budget, "val_forces_mae_mev_per_a") for r in runs]
            row["val_F_at_baseline_wall_time"] = mean(at_budget)
            row["baseline_wall_time_s"] = budget
        rows.append(row)
    return rows


def regime_means(rows: List[dict]) -> List[dict]:
    """Mean over molecules of the per-molecule paired ratios, per (n_train, variant)."""
    by: Dict[tuple, List[dict]] = defaultdict(list)
    for row in rows:
        by[(row["n_train"], row["epochs"], row["variant"])].append(row)
    out = []
    for (n, e, v), rs in sorted(by.items()):
        pairs = [x for r in rs for x in r["F_paired"]]
        out.append({"n_train": n, "epochs": e, "variant": v, "molecules": len(rs), "pairs": len(pairs),
                    "F_ratio": mean(r["F_ratio"] for r in rs), "E_ratio": mean(r["E_ratio"] for r in rs),
                    "F_ratio_pair_std": _spread(pairs) if pairs else float("nan"),
                    "F_ratio_best": min(r["F_ratio"] for r in rs), "F_ratio_worst": max(r["F_ratio"] for r in rs)})
    return out


def plot_curves(groups: Dict[tuple, List[dict]], out: Path) -> List[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    molecules = sorted({k[0] for k in groups})
    for molecule in molecules:
        regimes = sorted({(k[1], k[2]) for k in groups if k[0] == molecule})
        fig, axes = plt.subplots(2, len(regimes), figsize=(5.5 * len(regimes), 8), squeeze=False)
        for col, (n_train, epochs) in enumerate(regimes):
            for (mol, n, e, variant), runs in sorted(groups.items()):
                if (mol, n, e) != (molecule, n_train, epochs):
                    continue
                length = min(len(r["curve"]) for r in runs)
                epochs_axis = [runs[0]["curve"][i]["epoch"] for i in range(length)]
                f = [mean(r["curve"][i]["val_forces_mae_mev_per_a"] for r in runs) for i in range(length)]
                wall = [mean(r["curve"][i]["wall_time_s"] for r in runs) for i in range(length)]
                label = f"{variant} ({len(runs)} seeds)"
                axes[0, col].plot(epochs_axis, f, marker=".", label=label)
                axes[1, col].plot(wall, f, marker=".", label=label)
            axes[0, col].set(title=f"{molecule}, {n_train} training frames", xlabel="epoch",
                             ylabel="validation force MAE (meV/Å)", yscale="log")
            axes[1, col].set(xlabel="wall time (s, one thread)", ylabel="validation force MAE (meV/Å)",
                             yscale="log")
            axes[0, col].legend(fontsize=8)
        fig.tight_layout()
        path = out.parent / f"{out.name}_curves_{molecule}.png"
        tmp = path.with_suffix(".tmp.png")
        fig.savefig(tmp, dpi=110)
        plt.close(fig)
        os.replace(tmp, path)
        written.append(path.name)
    return written


def _at_budget(value: float) -> str:
    # nan: the variant had no validation point yet at the baseline's wall time (pre-training)
    return "not yet" if value != value else f"{value:.1f}"


def _fmt(mean_value: float, std_value: float) -> str:
    return f"{mean_value:.1f}" if std_value != std_value else f"{mean_value:.1f} ± {std_value:.1f}"


def markdown(rows: List[dict], regimes: List[dict], plots: List[str], baseline: str) -> str:
    lines = ["# EMPP accuracy benchmark (CPU)", "",
             f"Machine: {cpu_model()}, {os.cpu_count()} cores; every cell one torch thread. "
             "Data: GFN2-xTB MD17-format files of ../shared/data; 50 validation and 500 test frames; "
             f"test MAE of the best-validation checkpoint. Ratios are paired by seed against `{baseline}`.", "",
             "| molecule | train frames | epochs | variant | seeds | test F MAE (meV/Å) | F ratio | "
             "test E MAE (meV) | E ratio | val F at baseline wall time | CPU s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['molecule']} | {r['n_train']} | {r['epochs']} | {r['variant']} | {len(r['seeds'])} | "
            f"{_fmt(r['F_mean'], r['F_std'])} | {r['F_ratio']:.3f} | {_fmt(r['E_mean'], r['E_std'])} | "
            f"{r['E_ratio']:.3f} | {_at_budget(r.get('val_F_at_baseline_wall_time', float('nan')))} | "
            f"{r['cpu_time_s']:.0f} |")
    lines += ["", "Mean over molecules of the paired ratios (< 1: better than the baseline):", "",
              "| train frames | epochs | variant | molecules | seed pairs | F ratio | spread over pairs | "
              "best / worst molecule F ratio | E ratio |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in regimes:
        lines.append(f"| {r['n_train']} | {r['epochs']} | {r['variant']} | {r['molecules']} | {r['pairs']} | "
                     f"{r['F_ratio']:.3f} | {r['F_ratio_pair_std']:.3f} | {r['F_ratio_best']:.3f} / "
                     f"{r['F_ratio_worst']:.3f} | {r['E_ratio']:.3f} |")
    lines += ["", "Learning curves (validation force MAE against epoch and wall time): "
              + ", ".join(f"`{p}`" for p in plots), ""]
    return "\n".join(lines)


def write_report(work: Path, out: Path, baseline: str) -> None:
    results = list(all_results(work))
    if not results:
        raise SystemExit(f"no finished cells under {work}")
    groups = group(results)
    rows = summarise(groups, baseline)
    regimes = regime_means(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    plots = plot_curves(groups, out)
    grid = work / "grid.json"
    doc = {"machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "threads_per_cell": 1},
           "grid": json.loads(grid.read_text()) if grid.is_file() else None,
           "summary": rows, "regime_means": regimes, "cells": results}
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(rows, regimes, plots, baseline))
    print(out.with_suffix(".md").read_text())
