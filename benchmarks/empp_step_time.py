"""Training-step time with and without EMPP (CPU), of the package's own training step.

Each variant is a ``Trainer`` set up as ``empp-ff train`` sets it up (config, data store,
splits, statistics, model, AdamW, schedule, EMA, ``Objective``), and a step is
``Trainer.train_epoch`` over an epoch of one batch: the loop ``empp-ff train`` runs (the
batch's collation and neighbour lists, ``Objective.losses``, ``Objective.backward``, gradient
clipping, the AdamW step, the schedule, EMA and the step statistics) plus that epoch's own
set-up and summary (loader, generators; a few ms). The training split is one batch of
``--batch-size`` frames, the same for every variant (same seed); EMPP as the auxiliary
loss at weight 1 from random weights, ``num_masks`` = n. Median over the timed steps
after warm-up, for no EMPP, n = 1 and n = 3; the variants' steps interleave, the order
rotating each round, so load changes on a shared machine hit all of them alike. Wall and
process CPU time are recorded, and the EMPP module's forward (the masked pass) on its own.

Default model: MACE 64 channels, max_L = 1, 2 interactions, correlation 3, max_ell 3, r_max
5 Å, float32 (the other fields at ``Architecture``'s defaults), batch of 8 aspirin frames
(MD17), learning rate 1e-4:

    python benchmarks/empp_step_time.py [path/to/md17_aspirin.npz] [--steps 10] [--warmup 3] [--threads 2]

``--backbones mace torchmd_et`` times every backbone's variants in the same interleaved
loop (the ET: torchmd-net's Equivariant Transformer at the same width and number of
message-passing layers); ``--demo-architecture`` takes each backbone's demo architecture
(``empp-ff train`` without a config), e.g.:

    python benchmarks/empp_step_time.py --backbones mace torchmd_et --demo-architecture --batch-size 5 \\
        --masks 0 1 --threads 1 --out benchmarks/results/backbone_step_time_cpu

Writes benchmarks/results/empp_step_time_cpu.json and .md (or ``--out``).

Since issue 27 the script times the package's step. The committed results
(``empp_step_time_cpu``, ``backbone_step_time_cpu``, ``mace_path_ab*``) were taken with
its earlier form, which timed a step of its own: the clean pass with forces, MSE(E) +
80 MSE(F) [+ EMPP], backward and a plain Adam step (no clipping, EMA or schedule), on
batches drawn from the whole data file, built before the loop (no collation or
neighbour lists in the time), the variants stepped in a fixed order. Their command lines
run unchanged (``--device`` and ``--work`` are new).
"""

from __future__ import annotations

import os

# Entry point only: OpenMP threads sleep instead of spinning while they wait, so the
# process CPU time is not inflated by spinning when the machine is oversubscribed.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from empp_ff.testing.benchmarking import interleaved, load_average, machine_info, write_results

RESULTS = Path(__file__).resolve().parent / "results"


class StepRunner:
    """One variant's ``Trainer``; a call runs one training step (an epoch of one batch) and
    returns its wall seconds, keeping its CPU seconds and the EMPP forward's wall seconds."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.epoch = 0
        self.cpu: List[float] = []
        self.empp_forward: List[float] = []
        self._forward = self._started = 0.0
        if trainer.model.empp is not None:
            trainer.model.empp.register_forward_pre_hook(self._forward_starts)
            trainer.model.empp.register_forward_hook(self._forward_ends)

    def _forward_starts(self, *_) -> None:
        self._started = time.perf_counter()

    def _forward_ends(self, *_) -> None:
        self._forward += time.perf_counter() - self._started

    def __call__(self) -> float:
        self._forward = 0.0
        wall, cpu = time.perf_counter(), time.process_time()
        self.trainer.train_epoch(self.epoch)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        self.epoch += 1
        self.cpu.append(cpu)
        self.empp_forward.append(self._forward)
        return wall


def variant_settings(args, backbone: str, masks: int, store: Path, run_dir: Path) -> List[str]:
    """The ``--set`` overrides of one variant's run, on top of the demo config."""
    from empp_ff.model.spec import Architecture

    sets = {"run_dir": run_dir, "data.path": store, "data.n_train": args.batch_size, "data.n_val": args.batch_size,
            "data.n_test": 0, "train.batch_size": args.batch_size, "train.max_epochs": args.warmup + args.steps,
            "train.lr": 1e-4, "train.threads": args.threads, "train.device": args.device, "train.progress": "false",
            "train.tensorboard": "false", "model.backbone": backbone, "empp.pretrained": "null",
            "empp.pretrained_reinit": "[]", "empp.enabled": "true" if masks else "false"}
    if masks:
        sets.update({"empp.num_masks": masks, "empp.weight": 1.0})
    if not args.demo_architecture:
        fields = Architecture(backbone=backbone, num_channels=args.channels, r_max=5.0, dtype="float32").architecture()
        sets.update({f"model.{key}": value for key, value in fields.items()})
    return [f"{key}={value}" for key, value in sets.items()]


def build_runs(args, work: Path) -> Dict[str, StepRunner]:
    """{variant: StepRunner}, every Trainer set up on one store of the data file."""
    from empp_ff.data.conversion import convert
    from empp_ff.train.config import load_config
    from empp_ff.train.trainer import Trainer

    store = work / "data.h5"
    convert(args.data, store, progress=False)
    runs = {}
    for backbone in args.backbones:
        for masks in args.masks:
            variant = "no_empp" if masks == 0 else f"empp_n{masks}"
            key = variant if backbone == "mace" else f"{backbone}/{variant}"
            cfg = load_config(None, variant_settings(args, backbone, masks, store, work / key.replace("/", "_")))
            trainer = Trainer(cfg, log=lambda msg: None)
            trainer.setup()
            runs[key] = StepRunner(trainer)
    return runs


def summarise(runs: Dict[str, StepRunner], wall: Dict[str, List[float]], warmup: int) -> Dict[str, dict]:
    results = {}
    for key, run in runs.items():
        cpu, forward = run.cpu[warmup:], run.empp_forward[warmup:]
        results[key] = {
            "median_step_s": statistics.median(wall[key]),
            "min_step_s": min(wall[key]),
            "median_step_cpu_s": statistics.median(cpu),
            "steps_s": wall[key],
            "steps_cpu_s": cpu,
            "median_empp_forward_s": statistics.median(forward) if run.trainer.model.empp is not None else None,
        }
    for key, r in results.items():  # relative to the no-EMPP run of the same backbone
        prefix = key.rpartition("/")[0]
        own = results.get(f"{prefix}/no_empp" if prefix else "no_empp", {})
        base, base_cpu, base_min = own.get("median_step_s"), own.get("median_step_cpu_s"), own.get("min_step_s")
        r["ratio_vs_no_empp"] = r["median_step_s"] / base if base else None
        r["cpu_ratio_vs_no_empp"] = r["median_step_cpu_s"] / base_cpu if base_cpu else None
        r["min_ratio_vs_no_empp"] = r["min_step_s"] / base_min if base_min else None
    mace_base = results.get("no_empp", {}).get("median_step_cpu_s")
    for r in results.values():
        r["cpu_ratio_vs_mace_no_empp"] = r["median_step_cpu_s"] / mace_base if mace_base else None
    return results


def markdown(report: dict, args) -> str:
    m = report["machine"]
    lines = [
        f"# EMPP training-step time ({args.device})",
        "",
        f"`{report['command']}`",
        "",
        f"{report['model']}; batch {args.batch_size} × {report['data']} ({report['atoms_per_structure']} atoms); "
        f"{report['step']}",
        f"torch {m['torch']}, {m['cpu']}, {report['threads']} threads; load average (1/5/15 min) at start "
        f"{', '.join(f'{x:.2f}' for x in report['load_average_at_start'])}, at end "
        f"{', '.join(f'{x:.2f}' for x in report['load_average_at_end'])} (shared machine).",
        f"Median of {args.steps} steps after {args.warmup} warm-up steps; variants interleaved step by step.",
        "Wall time is inflated by other processes; process CPU time (all threads) is the steadier figure.",
        "",
        "Ratios are to the no-EMPP run of the same backbone; the last column to MACE without EMPP.",
        "",
        "| run | median step wall (s) | × no EMPP (wall) | min step wall (s) | × no EMPP (min) | median step CPU (s) "
        "| × no EMPP (CPU) | EMPP forward wall (s) | CPU × MACE no EMPP |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def fmt(value, digits):
        return f"{value:.{digits}f}" if value else "—"

    for key, r in report["results"].items():
        lines.append(f"| {key} | {r['median_step_s']:.3f} | {fmt(r['ratio_vs_no_empp'], 2)} | {r['min_step_s']:.3f} | "
                     f"{fmt(r['min_ratio_vs_no_empp'], 2)} | {r['median_step_cpu_s']:.3f} | "
                     f"{fmt(r['cpu_ratio_vs_no_empp'], 2)} | {fmt(r['median_empp_forward_s'], 3)} | "
                     f"{fmt(r['cpu_ratio_vs_mace_no_empp'], 2)} |")
    lines += ["", f"Target: {report['target']}.", ""]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", default="/work/shared/data/md17_aspirin.npz",
                    help="any data file empp-ff trains on (converted once to a store)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--masks", type=int, nargs="+", default=[0, 1, 3])
    ap.add_argument("--backbones", nargs="+", default=["mace"], help="model.backbone names (mace, torchmd_et)")
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--demo-architecture", action="store_true",
                    help="each backbone's demo architecture (empp-ff train without a config) instead of the "
                         "benchmark's (Architecture's defaults at --channels)")
    ap.add_argument("--device", default="cpu", help="train.device of every run")
    ap.add_argument("--work", default=None, help="run directories (default: a temporary directory, removed)")
    ap.add_argument("--out", default=str(RESULTS / "empp_step_time_cpu"))
    args = ap.parse_args(argv)

    import torch

    from empp_ff.train.replay import replayable_run

    torch.set_num_threads(args.threads)  # entry point: set explicitly, never in the library
    load_start = load_average()
    with tempfile.TemporaryDirectory(prefix="empp_step_time_") as tmp, replayable_run(torch.device(args.device)):
        runs = build_runs(args, Path(args.work or tmp))

        def progress(i, measured):
            print(f"step {i + 1}/{args.warmup + args.steps}: "
                  + ", ".join(f"{k} {v:.2f}s" for k, v in measured.items()), flush=True)

        wall = interleaved(runs, args.steps, args.warmup, progress)
        first = next(iter(runs.values())).trainer
        report = {
            "benchmark": "empp_step_time",
            "command": "python benchmarks/empp_step_time.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "model": ("the demo architecture of each backbone" if args.demo_architecture else
                      f"Architecture's defaults at {args.channels} channels (MACE: max_L 1, 2 interactions, "
                      "correlation 3, max_ell 3; torchmd_et: 2 attention layers, 8 heads, 32 RBF), r_max 5, float32"),
            "specs": {key: run.trainer.spec.to_dict() for key, run in runs.items()},
            "backbones": args.backbones,
            "data": os.path.basename(args.data),
            "batch_size": args.batch_size,
            "atoms_per_structure": int(first.data.store.n_atoms[0]),
            "step": "the package's step (Trainer.train_epoch over one batch): Objective "
                    f"({first.cfg.loss.type}, energy × {first.cfg.loss.energy_weight}, forces × "
                    f"{first.cfg.loss.forces_weight} [+ EMPP × 1]), backward, grad clip "
                    f"{first.cfg.train.grad_clip}, AdamW, schedule, EMA {first.cfg.train.ema}.",
            "empp": {k: v for k, v in first.cfg.empp.to_dict().items() if k not in ("enabled", "num_masks")},
            "warmup_steps": args.warmup,
            "timed_steps": args.steps,
            "threads": torch.get_num_threads(),
            "machine": machine_info(),
            "load_average_at_start": load_start,
            "load_average_at_end": load_average(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "results": summarise(runs, wall, args.warmup),
            "target": "empp_n1 <= 1.5 x no_empp",
        }
        for run in runs.values():
            run.trainer.rundir.close()
    text = markdown(report, args)
    write_results(args.out, report, text)
    print(text)


if __name__ == "__main__":
    main()
