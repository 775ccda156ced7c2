"""What each loss term puts on the shared backbone: gradient norms during training vs empp.weight.

Trains the demo config (README command (a)) on a shared GFN2-xTB MD17-format file
with ``train.grad_norm_every`` set, once without EMPP and once per EMPP weight, and
reads the per-epoch means of ``grad_norm_energy``, ``grad_norm_forces``,
``grad_norm_empp`` and ``grad_cos_forces_empp`` from each run's metrics.csv. Each
term's norm is that of the gradient of its weighted loss (as it enters the
objective) with respect to the backbone parameters, measured every N steps on the
training batch before the optimiser step.

    python benchmarks/empp_gradients.py --molecule aspirin --weights 0.1 1 10 50 --epochs 10

Writes OUT.json, OUT.md and OUT.png (norms against epoch, one panel per weight).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from empp_ff.testing.benchmarking import cpu_model, write_results

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
COLUMNS = ("grad_norm_energy", "grad_norm_forces", "grad_norm_empp", "grad_cos_forces_empp",
           "val_forces_mae_mev_per_a", "val_energy_mae_mev")


def train(name: str, overrides: dict, args) -> dict:
    run_dir = Path(args.work) / name
    settings = {"run_dir": run_dir, "data.path": Path(args.data_dir) / f"md17_{args.molecule}.npz",
                "data.n_train": args.n_train, "data.n_val": 50, "data.n_test": 50, "seed": args.seed,
                "train.max_epochs": args.epochs, "train.threads": 1, "train.progress": False,
                "train.tensorboard": False, "train.grad_norm_every": args.every, **overrides}
    if not (run_dir / "test_metrics.json").is_file():
        cmd = ["empp-ff", "train"] + [x for k, v in settings.items() for x in ("--set", f"{k}={v}")]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        with open(Path(args.work) / f"{name}.log", "w") as log:
            subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, check=True)
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    return {"name": name, "overrides": {k: str(v) for k, v in overrides.items()},
            "epochs": [{c: float(r[c]) if r.get(c) else None for c in ("epoch",) + COLUMNS} for r in rows]}


def plot(runs, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.6), squeeze=False, sharey=True)
    for ax, run in zip(axes[0], runs):
        epochs = [e["epoch"] for e in run["epochs"]]
        for key, label in (("grad_norm_forces", "forces"), ("grad_norm_energy", "energy"),
                           ("grad_norm_empp", "EMPP")):
            values = [e[key] for e in run["epochs"]]
            if any(v is not None for v in values):
                ax.plot(epochs, values, marker=".", label=label)
        ax.set(title=run["name"], xlabel="epoch", yscale="log")
        ax.legend(fontsize=8)
    axes[0, 0].set_ylabel("gradient norm on the backbone")
    fig.tight_layout()
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, out.with_suffix(".png"))


def markdown(runs, args) -> str:
    lines = ["# Gradient norms per loss term on the shared backbone (CPU)", "",
             f"Command: `python benchmarks/empp_gradients.py {' '.join(sys.argv[1:])}`", "",
             f"Machine: {cpu_model()}, one torch thread per run. Demo config, {args.molecule} "
             f"({args.n_train} training frames, GFN2-xTB), {args.epochs} epochs, measured every {args.every} "
             "steps; epoch means of the norm of each weighted term's gradient.", "",
             "| run | epoch | forces | energy | EMPP | EMPP / forces | cos(forces, EMPP) | val F MAE (meV/Å) |",
             "|---|---|---|---|---|---|---|---|"]
    for run in runs:
        n = len(run["epochs"])
        for e in [run["epochs"][i] for i in sorted({0, n // 2, n - 1})]:
            empp = e["grad_norm_empp"]
            ratio = f"{empp / e['grad_norm_forces']:.3f}" if empp is not None else "–"
            cos = f"{e['grad_cos_forces_empp']:+.3f}" if e["grad_cos_forces_empp"] is not None else "–"
            lines.append(f"| {run['name']} | {int(e['epoch'])} | {e['grad_norm_forces']:.3g} | "
                         f"{e['grad_norm_energy']:.3g} | {empp if empp is None else f'{empp:.3g}'} | {ratio} | "
                         f"{cos} | {e['val_forces_mae_mev_per_a']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--molecule", default="aspirin")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.1, 1.0, 10.0, 50.0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--n-train", type=int, default=200)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--work", default=str(REPO / "runs" / "bench_empp_gradients"))
    parser.add_argument("--out", default=str(HERE / "results" / "empp_gradients_cpu"))
    args = parser.parse_args()
    Path(args.work).mkdir(parents=True, exist_ok=True)
    variants = [("no_empp", {"empp.enabled": False})] + [
        (f"empp_w{w:g}", {"empp.enabled": True, "empp.pretrained": "null", "empp.weight": w, "empp.schedule": "constant",
                               "empp.grad_balance": "null", "empp.batch_fraction": 1.0}) for w in args.weights]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        runs = list(pool.map(lambda v: train(v[0], v[1], args), variants))
    out = Path(args.out)
    write_results(out, {"machine": cpu_model(), "args": vars(args), "runs": runs}, markdown(runs, args), indent=1)
    plot(runs, out)
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
