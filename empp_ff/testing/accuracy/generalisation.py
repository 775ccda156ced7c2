"""Tables and plots of the EMPP generalisation study: paired ratios with 95 % intervals
per set (design / report), regime and variant, per molecule, and the long-regime curves."""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections import defaultdict
from pathlib import Path
from statistics import mean, stdev
from typing import Dict, List

from empp_ff.testing.benchmarking import cpu_model, ratio_interval, verdict

METRICS = (("test_forces_mae_mev_per_a", "F"), ("test_energy_mae_mev", "E"), ("cpu_time_s", "CPU"))


def backbone_of(result: dict) -> str:
    """The backbone a cell trained (``model.backbone`` in its command; MACE by default)."""
    found = re.search(r"model\.backbone=(\w+)", result.get("command", ""))
    return found.group(1) if found else "mace"


def _pairs(results: List[dict], baseline: str) -> Dict[tuple, List[dict]]:
    """{(set, backbone, n_train, epochs, variant): [{molecule, seed, F, E, CPU ratios, raw values}]};
    a variant is paired with the baseline of its own backbone."""
    def paired_with(r):
        return backbone_of(r), r["molecule"], r["n_train"], r["epochs"], r["seed"]

    base = {paired_with(r): r for r in results if r["variant"] == baseline}
    out: Dict[tuple, List[dict]] = defaultdict(list)
    for r in results:
        b = base.get(paired_with(r))
        if b is None:
            continue
        pair = {"molecule": r["molecule"], "seed": r["seed"], "cpu_s_per_epoch": r["cpu_time_s"] / r["epochs"]}
        for key, short in METRICS:
            pair[short] = r[key] / b[key]
            pair[f"{short}_value"] = r[key]
        pair["val_F_by_epoch"] = _curve_ratio(r.get("curve") or [], b.get("curve") or [])
        out[(r["set"], backbone_of(r), r["n_train"], r["epochs"], r["variant"])].append(pair)
    return out


def _curve_ratio(curve: List[dict], base: List[dict]) -> Dict[int, float]:
    """{epoch: validation force MAE ratio} over the epochs both runs reached."""
    b = {row["epoch"]: row["val_forces_mae_mev_per_a"] for row in base}
    return {row["epoch"]: row["val_forces_mae_mev_per_a"] / b[row["epoch"]] for row in curve if row["epoch"] in b}


def _head_start(pairs: List[dict]) -> Dict[int, float]:
    """Geometric-mean validation force ratio at a few epochs: how a start's lead evolves."""
    out = {}
    for epoch in (1, 2, 5, 10, 20, 50, 100, 300):
        values = [p["val_F_by_epoch"][epoch] for p in pairs if epoch in p["val_F_by_epoch"]]
        if len(values) == len(pairs) and values:
            out[epoch] = ratio_interval(values)["ratio"]
    return out


def summarise(results: List[dict], baseline: str) -> List[dict]:
    rows = []
    for (which, backbone, n_train, epochs, variant), pairs in sorted(_pairs(results, baseline).items()):
        row = {"set": which, "backbone": backbone, "n_train": n_train, "epochs": epochs, "variant": variant,
               "pairs": len(pairs), "molecules": sorted({p["molecule"] for p in pairs}),
               "val_F_ratio_by_epoch": _head_start(pairs),
               "cpu_s_per_epoch": mean(p["cpu_s_per_epoch"] for p in pairs)}
        for _, short in METRICS:
            row[short] = ratio_interval([p[short] for p in pairs])
            row[f"{short}_verdict"] = verdict(row[short])
            by_mol = defaultdict(list)
            for p in pairs:
                by_mol[p["molecule"]].append(p[short])
            row[f"{short}_by_molecule"] = {m: ratio_interval(v)["ratio"] for m, v in sorted(by_mol.items())}
            row[f"{short}_values"] = {m: [p[f"{short}_value"] for p in pairs if p["molecule"] == m]
                                      for m in sorted(by_mol)}
        rows.append(row)
    return rows


def _ci(i: Dict[str, float]) -> str:
    if i["n"] < 2:
        return f"{i['ratio']:.3f}"
    return f"{i['ratio']:.3f} [{i['low']:.3f}, {i['high']:.3f}]"


def markdown(rows: List[dict], baseline: str) -> str:
    lines = ["# EMPP on molecules it has never seen: design / report study (issue 17)", "",
             f"Machine: {cpu_model()} ({os.cpu_count()} CPUs), one torch thread per run. Ratios: test MAE of "
             f"the variant / `{baseline}` on the same split, epochs and seed; geometric mean over all "
             "(molecule, seed) pairs of the set with a 95 % t-interval; a gain counts only where the interval "
             "lies below 1. Split: `benchmarks/empp_split.json`. CPU s / epoch: one thread, the mean over the "
             "variant's cells (training, validation and checkpointing of one epoch).", "",
             "| set | backbone | train frames | epochs | variant | pairs | force MAE ratio [95 %] | "
             "| energy MAE ratio [95 %] | | CPU time ratio | CPU s / epoch | force ratio by molecule "
             "| validation force ratio at epoch 1 / 5 / 10 / 20 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        per_mol = ", ".join(f"{m} {v:.2f}" for m, v in r["F_by_molecule"].items())
        if r["variant"] == baseline:  # its own row: the CPU time every ratio of the backbone is relative to
            lines.append(f"| {r['set']} | {r['backbone']} | {r['n_train']} | {r['epochs']} | {r['variant']} | "
                         f"{r['pairs']} | 1 | | 1 | | 1 | {r['cpu_s_per_epoch']:.1f} | | |")
            continue
        lines.append(f"| {r['set']} | {r['backbone']} | {r['n_train']} | {r['epochs']} | {r['variant']} | "
                     f"{r['pairs']} | {_ci(r['F'])} | {r['F_verdict']} | {_ci(r['E'])} | {r['E_verdict']} | "
                     f"{r['CPU']['ratio']:.2f} | {r['cpu_s_per_epoch']:.1f} | {per_mol} | "
                     f"{_epochs(r['val_F_ratio_by_epoch'])} |")
    lines += ["", "Test MAE per molecule (mean ± std over seeds; meV/Å, meV):", "",
              "| set | backbone | train frames | epochs | variant | molecule | forces | energies |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for m, values in r["F_values"].items():
            e = r["E_values"][m]
            lines.append(f"| {r['set']} | {r['backbone']} | {r['n_train']} | {r['epochs']} | {r['variant']} | {m} | "
                         f"{_mean_std(values)} | {_mean_std(e)} |")
    return "\n".join(lines) + "\n"


def _epochs(by_epoch: Dict[int, float]) -> str:
    return " / ".join(f"{by_epoch[e]:.2f}" for e in (1, 5, 10, 20) if e in by_epoch)


def _mean_std(values: List[float]) -> str:
    return f"{mean(values):.1f} ± {stdev(values):.1f}" if len(values) > 1 else f"{values[0]:.1f}"


def write_report(results: List[dict], sets: Dict[str, str], out: Path, baseline: str) -> None:
    for r in results:
        r["set"] = sets.get(r["molecule"], "other")
    rows = summarise(results, baseline)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"machine": cpu_model(), "rows": rows, "cells": results},
                                                   indent=1, default=str) + "\n")
    out.with_suffix(".md").write_text(markdown(rows, baseline))
    print(out.with_suffix(".md").read_text())


def _curve(metrics_csv: Path) -> Dict[int, float]:
    with open(metrics_csv) as fh:
        return {int(row["epoch"]): float(row["val_forces_mae_mev_per_a"]) for row in csv.DictReader(fh)}


def plot_long(work: Path, out: Path, baseline: str) -> None:
    """Validation force-MAE ratio (variant / baseline, paired by seed) against epoch, from
    the metrics.csv of every long run under ``work``, finished or not."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: Dict[tuple, Dict[int, float]] = {}
    for path in Path(work).glob("*/n*_e*/*/seed*/run/metrics.csv"):
        molecule, regime, variant, seed = path.parts[-6:-2]
        curves[(molecule, regime, variant, seed)] = _curve(path)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    summary = {}
    for (molecule, regime, variant, seed), curve in sorted(curves.items()):
        base = curves.get((molecule, regime, baseline, seed))
        if variant == baseline or base is None:
            continue
        epochs = sorted(set(curve) & set(base))
        ratio = [curve[e] / base[e] for e in epochs]
        ax.plot(epochs, ratio, label=f"{molecule} {variant} {seed}")
        tail = ratio[-max(1, len(ratio) // 10):]  # the last tenth of the epochs run so far
        summary[f"{molecule}/{regime}/{variant}/{seed}"] = {
            "epochs": epochs[-1] if epochs else 0, "ratio_last": ratio[-1] if ratio else math.nan,
            "ratio_last_tenth_mean": mean(tail) if tail else math.nan,
            "baseline_val_F_last": base[epochs[-1]] if epochs else math.nan}
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation force MAE / {baseline}")
    ax.set_xscale("log")
    if summary:
        ax.legend(fontsize=7)
    ax.set_title("EMPP variants against no EMPP, long regime")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)
    out.with_suffix(".json").write_text(json.dumps({"machine": cpu_model(), "runs": summary}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
