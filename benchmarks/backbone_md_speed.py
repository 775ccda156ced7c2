#!/usr/bin/env python
"""ASE MD speed of the two backbones (CPU): EMPPCalculator on a ``.pt`` model file of
MACE and of torchmd-net's Equivariant Transformer (``model.backbone: torchmd_et``), both at
the demo architecture (``empp-ff train`` without a config: 32 channels, 2 message-passing
layers, r_max 5 Å, float32; MACE L = 1, correlation 2; ET 8 heads, 32 RBF).

Systems: aspirin (21 atoms, no pbc) and a periodic box of water (1050 atoms by default).
VelocityVerlet steps are interleaved across the backbones (``empp_ff.testing.benchmarking``),
so load changes on a shared CPU hit both alike; the ratio is the figure to read. Weights
are random (speed does not depend on training). Needs the ``et`` extra.

    python benchmarks/backbone_md_speed.py [--threads 1] [--aspirin-steps 60] [--water-steps 10]

Writes benchmarks/results/backbone_md_speed_cpu.json and .md (or ``--out``).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

from empp_ff.testing.benchmarking import (
    MDRunner,
    cost_calculator,
    cpu_model,
    interleaved,
    load_average,
    step_rates,
    write_results,
)
from empp_ff.testing.structures import aspirin, water_box

RESULTS = Path(__file__).resolve().parent / "results"
BACKBONES = ("mace", "torchmd_et")


def _model_file(backbone: str, atomic_numbers, directory: Path) -> Path:
    """A demo-architecture model file of ``backbone`` with seeded random weights."""
    from empp_ff.export import export_potential
    from empp_ff.model.spec import BackboneSpec
    from empp_ff.testing.models import demo_potential
    from empp_ff.train.config import load_config

    architecture = load_config(None, [f"model.backbone={backbone}"]).model.architecture()
    spec = BackboneSpec(**architecture, atomic_numbers=sorted(atomic_numbers),
                        atomic_energies=[-10.0] * len(atomic_numbers), avg_num_neighbors=12.0, scale=1.0)
    return export_potential(demo_potential(spec, seed=0, perturb=0.02), directory / f"{backbone}.pt")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--aspirin-steps", type=int, default=60)
    parser.add_argument("--water-steps", type=int, default=10)
    parser.add_argument("--water-molecules", type=int, default=350)
    parser.add_argument("--out", default=str(RESULTS / "backbone_md_speed_cpu"))
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    systems = {"aspirin": (aspirin(), args.aspirin_steps, 5),
               f"water_{3 * args.water_molecules}": (water_box(args.water_molecules), args.water_steps, 2)}
    load_start = load_average()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = {b: _model_file(b, (1, 6, 8), Path(tmp)) for b in BACKBONES}
        sizes = {b: files[b].stat().st_size for b in BACKBONES}
        for name, (atoms, steps, warmup) in systems.items():
            runners = {b: MDRunner(atoms, cost_calculator(files[b])) for b in BACKBONES}
            times = interleaved({b: runner.step for b, runner in runners.items()}, steps, warmup)
            r = {b: step_rates(seconds) for b, seconds in times.items()}
            r["et_speed_vs_mace"] = r["torchmd_et"]["steps_per_s"] / r["mace"]["steps_per_s"]
            results[name] = r
            print(name, {b: round(r[b]["steps_per_s"], 2) for b in BACKBONES}, flush=True)
    from importlib import metadata as md

    report = {
        "benchmark": "backbone_md_speed",
        "models": "demo architecture of each backbone (load_config(None, ['model.backbone=...']).model.architecture()), "
                  "float32",
        "threads": args.threads,
        "cpu": cpu_model(), "machine": platform.machine(), "python": sys.version.split()[0],
        "versions": {"torch": torch.__version__, "mace-torch": md.version("mace-torch"),
                     "torchmd-net": md.version("torchmd-net")},
        "load_average_at_start": load_start, "load_average_at_end": load_average(),
        "file_bytes": sizes,
        "results": results,
    }
    lines = ["# ASE MD speed of the two backbones (CPU)", "",
             f"EMPPCalculator on a `.pt` file of each backbone's demo architecture (32 channels, 2 layers, "
             f"r_max 5 Å, float32); VelocityVerlet steps interleaved; {args.threads} torch thread(s); "
             f"{report['cpu']} ({os.cpu_count()} CPUs), torch {torch.__version__}; load average at start "
             f"{', '.join(f'{x:.2f}' for x in load_start)}, at end "
             f"{', '.join(f'{x:.2f}' for x in report['load_average_at_end'])} (shared machine: read the ratio).", "",
             "| system | MACE steps/s | torchmd_et steps/s | ET / MACE |", "|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['mace']['steps_per_s']:.3g} | {r['torchmd_et']['steps_per_s']:.3g} | "
                     f"{r['et_speed_vs_mace']:.2f}x |")
    lines += ["", f"Model file sizes: MACE {sizes['mace'] / 1e6:.2f} MB, torchmd_et {sizes['torchmd_et'] / 1e6:.2f} MB.",
              ""]
    write_results(args.out, report, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
