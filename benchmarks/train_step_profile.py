"""Where a training step's time goes (issue 26, item 1), on the package's own step.

A ``Trainer`` is set up exactly as ``empp-ff train`` sets it up (config, data, model,
optimiser, EMA, objective); then its step is run phase by phase, each phase timed on its
own (CPU ops are synchronous), median over ``--steps`` after ``--warmup``:

* data: the loader's next batch (collation and the batch's neighbour lists);
* forward: the energy alone (no graph kept for forces);
* force gradient: energy and forces with ``create_graph`` (what training runs), less the forward;
* EMPP masked pass: the EMPP module on the batch (the auxiliary's forward), when on;
* objective + backward: the package's ``Objective.losses`` (which runs the forward,
  forces and the EMPP pass again, as a step does) and ``Objective.backward`` (the double
  backward), less the forward parts measured above;
* optimiser: gradient clipping and the AdamW step; EMA and schedule; bookkeeping (the
  per-step ``.item()`` calls of the epoch statistics).

    python benchmarks/train_step_profile.py --config demo --frames 50 --empp off on --threads 1 \\
        --out benchmarks/results/train_step_profile_cpu
    python benchmarks/train_step_profile.py --config readme64 ...     # the README's 64-channel model
    python benchmarks/train_step_profile.py --backbone torchmd_et ...

Writes OUT.json and OUT.md with the command, machine and load.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List

import torch

from empp_ff.testing.benchmarking import machine_info, write_results
from empp_ff.train.config import load_config
from empp_ff.train.evaluate import predict
from empp_ff.train.replay import replayable_run
from empp_ff.train.trainer import Trainer

CONFIGS = {
    "demo": [],  # the demo architecture (32 channels)
    "readme64": ["model.num_channels=64", "model.correlation=3", "train.batch_size=8", "train.lr=0.005"],
}
PHASES = ("data", "forward", "force_gradient", "empp_pass", "objective_backward", "optimiser", "ema_schedule",
          "bookkeeping")


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def profile(trainer: Trainer, steps: int, warmup: int) -> Dict[str, float]:
    from empp_ff.data.dataset import epoch_generator

    model, objective = trainer.model, trainer.objective
    model.train()
    generator = epoch_generator(trainer.cfg.seed + 7919, 0)
    times: Dict[str, List[float]] = {p: [] for p in PHASES + ("step",)}
    batches = iter(())
    for i in range(warmup + steps):
        batch, t_data = _timed(next, batches, None)
        if batch is None:
            batches = iter(trainer.loaders.loader(trainer.train_set, train=True, epoch=i))
            batch, t_data = _timed(next, batches)
        batch = batch.to(trainer.device)
        _, t_fwd = _timed(predict, model.potential, batch, compute_forces=False)
        _, t_forces = _timed(predict, model.potential, batch, compute_forces=True, create_graph=True)
        t_empp = 0.0
        if model.empp is not None and "empp" in objective.weighting:
            _, t_empp = _timed(model.empp, model.potential.backbone, batch, generator, use_labels=True)
        trainer.optimizer.zero_grad(set_to_none=True)
        (losses, terms, _), t_losses = _timed(objective.losses, batch, generator, trainer.step)
        _, t_backward = _timed(objective.backward, losses, terms)

        def optimiser_step():
            if trainer.cfg.train.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), trainer.cfg.train.grad_clip)
            trainer.optimizer.step()

        _, t_opt = _timed(optimiser_step)

        def ema_schedule():
            trainer.scheduler.step()
            if trainer.ema is not None:
                trainer.ema.update()

        _, t_ema = _timed(ema_schedule)
        _, t_book = _timed(dict, ((k, v.item()) for k, v in losses.items()))
        trainer.step += 1
        if i < warmup:
            continue
        measured = {"data": t_data, "forward": t_fwd, "force_gradient": t_forces - t_fwd, "empp_pass": t_empp,
                    "objective_backward": t_losses + t_backward - t_forces - t_empp, "optimiser": t_opt,
                    "ema_schedule": t_ema, "bookkeeping": t_book}
        for key, value in measured.items():
            times[key].append(value)
        # a training step runs data, objective + backward, optimiser, EMA, bookkeeping once
        times["step"].append(t_data + t_losses + t_backward + t_opt + t_ema + t_book)
    return {k: statistics.median(v) for k, v in times.items()}


def run_case(config: str, backbone: str, frames: int, empp: bool, threads: int, steps: int, warmup: int,
             work: Path) -> Dict[str, float]:
    name = f"{config}_{backbone}_n{frames}_{'empp' if empp else 'plain'}"
    sets = CONFIGS[config] + [f"model.backbone={backbone}", f"data.n_train={frames}", "data.n_val=10",
                              "data.n_test=10", f"run_dir={work / name}", "train.progress=false",
                              "train.tensorboard=false", f"train.threads={threads}", "empp.pretrained=null",
                              "empp.pretrained_reinit=[]", f"empp.enabled={'true' if empp else 'false'}",
                              "empp.weight=1.0"]
    torch.set_num_threads(threads)
    trainer = Trainer(load_config(None, sets), log=lambda msg: None)
    with replayable_run(trainer.device):
        trainer.setup()
        result = profile(trainer, steps, warmup)
    trainer.rundir.close()
    return {"case": name, **result}


def write(results: List[dict], out: Path, argv: List[str]) -> None:
    machine = machine_info()
    doc = {"command": "python benchmarks/train_step_profile.py " + " ".join(argv), "machine": machine,
           "results": results}
    lines = ["# Where a training step's time goes (issue 26)", "", f"`{doc['command']}`", "",
             f"{machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}, load {machine['load_1min']} "
             "at the end. Median seconds per step; the share of the step in brackets.", "",
             "| case | step (s) | " + " | ".join(PHASES) + " |", "|---" * (len(PHASES) + 2) + "|"]
    for r in results:
        cells = [f"{r[p]:.4f} ({100 * r[p] / r['step']:.0f} %)" for p in PHASES]
        lines.append(f"| {r['case']} | {r['step']:.4f} | " + " | ".join(cells) + " |")
    write_results(out, doc, "\n".join(lines) + "\n", indent=1)


def main(argv: List[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", nargs="+", default=["demo"], choices=sorted(CONFIGS))
    parser.add_argument("--backbone", nargs="+", default=["mace"])
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--empp", nargs="+", default=["off", "on"], choices=["off", "on"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("runs/step_profile"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/train_step_profile_cpu"))
    args = parser.parse_args(argv)
    results = [run_case(c, b, args.frames, e == "on", args.threads, args.steps, args.warmup, args.work)
               for c in args.config for b in args.backbone for e in args.empp]
    write(results, args.out, argv)
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main(sys.argv[1:])
