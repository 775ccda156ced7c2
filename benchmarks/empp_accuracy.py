"""Accuracy ablation: test MAE without EMPP, with 1 mask and with 3 masks, at equal epochs.

Trains the same MACE model on the shared GFN2-xTB aspirin data (950 train / 50 val,
rest test, MD17 protocol) three times (per seed), identical except for the EMPP
block, and records energy / force test MAEs, wall time and the configs.

    python benchmarks/empp_accuracy.py --data ../shared/data/md17_aspirin.npz \
        --epochs 6 --channels 32 --seeds 1 --out benchmarks/results/empp_accuracy_cpu

Writes OUT.json and OUT.md. The budget is tiny compared with the paper's 2000
epochs, so the numbers say how EMPP behaves early in training, nothing more.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from _machine import cpu_model  # benchmarks/_machine.py (scripts run from this folder's path)

VARIANTS = {
    "no_empp": {"empp.enabled": False},
    "empp_n1": {"empp.enabled": True, "empp.num_masks": 1},
    "empp_n3": {"empp.enabled": True, "empp.num_masks": 3},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/md17_aspirin.npz"))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--empp-weight", type=float, default=50.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", default="runs/bench_empp_accuracy")
    parser.add_argument("--out", default="benchmarks/results/empp_accuracy_cpu")
    args = parser.parse_args()

    import torch

    from empp_ff.train.config import load_config
    from empp_ff.train.trainer import run_training

    torch.set_num_threads(args.threads)
    base = {
        "data.path": args.data, "data.n_train": 950, "data.n_val": 50,
        "model.num_channels": args.channels, "model.max_L": 1, "model.num_interactions": 2,
        "model.correlation": 3, "model.dtype": "float32",
        "train.max_epochs": args.epochs, "train.batch_size": 8, "train.lr": 5e-3,
        "train.progress": False, "train.tensorboard": False,
        "loss.energy_weight": 1.0, "loss.forces_weight": 80.0, "empp.weight": args.empp_weight,
    }
    results = []
    for seed in args.seeds:
        for name in args.variants:
            overrides = {**base, **VARIANTS[name], "seed": seed, "run_dir": f"{args.work}/{name}_s{seed}"}
            cfg = load_config(None, [f"{k}={v}" for k, v in overrides.items()])
            load_before = os.getloadavg()[0]
            start = time.perf_counter()
            metrics = run_training(cfg, log=lambda m: print(f"[{name} s{seed}] {m}", flush=True))
            wall = time.perf_counter() - start
            results.append({
                "variant": name, "seed": seed, "wall_time_s": wall, "load_average_before": load_before,
                "test_energy_mae_mev": metrics.get("energy_mae_mev"),
                "test_forces_mae_mev_per_a": metrics.get("forces_mae_mev_per_a"),
                "test_energy_rmse_mev": metrics.get("energy_rmse_mev"),
                "test_forces_rmse_mev_per_a": metrics.get("forces_rmse_mev_per_a"),
                "best_epoch": metrics.get("epoch"), "overrides": overrides,
            })
            print(json.dumps(results[-1]), flush=True)

    report = {
        "command": "python benchmarks/empp_accuracy.py " + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(args).items()),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "device": "cpu", "threads": args.threads},
        "torch": torch.__version__,
        "data": args.data, "protocol": "950 train / 50 val / rest test, split seed = run seed",
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# EMPP accuracy ablation (CPU)", "",
        f"Command: `{report['command']}`", "",
        f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, torch {report['torch']}, "
        f"{args.threads} threads. Data: {args.data} (GFN2-xTB labels). Model: MACE {args.channels} channels, "
        f"L=1, 2 interactions, correlation 3, float32; {args.epochs} epochs, batch 8, lr 5e-3, EMA; "
        f"loss weights E 1 / F 80 / EMPP {args.empp_weight}.", "",
        "| variant | seed | test energy MAE (meV) | test force MAE (meV/Å) | wall time (s) | load avg at start |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['variant']} | {r['seed']} | {r['test_energy_mae_mev']:.1f} | "
                     f"{r['test_forces_mae_mev_per_a']:.1f} | {r['wall_time_s']:.0f} | {r['load_average_before']:.1f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
