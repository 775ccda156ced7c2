"""Training-step time with and without EMPP (CPU).

MACE 64 channels, max_L = 1, 2 interactions, float32, batch of 8 aspirin frames
(MD17, kcal/mol → eV). One step = clean pass (energy + forces with
create_graph) → loss = MSE(E) + 80·MSE(F) [+ weight·EMPP loss] → backward →
Adam step. Median over the timed steps after warm-up, for: no EMPP, n = 1, n = 3.

    python benchmarks/empp_step_time.py [path/to/md17_aspirin.npz] [--steps 10] [--warmup 3] [--threads 2]

``--backbones mace torchmd_et`` times every backbone's variants in the same interleaved
loop (the ET: torchmd-net's Equivariant Transformer, 8 heads, 32 RBF, at the same width and
number of message-passing layers), e.g. the demo width:

    python benchmarks/empp_step_time.py --backbones mace torchmd_et --channels 32 --batch-size 5 \
        --masks 0 1 --threads 1 --out benchmarks/results/backbone_step_time_cpu

Writes benchmarks/results/empp_step_time_cpu.json and .md.
"""

from __future__ import annotations

import os

# Entry point only: OpenMP threads sleep instead of spinning while they wait, so the
# process CPU time is not inflated by spinning when the machine is oversubscribed.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from _machine import cpu_model  # benchmarks/_machine.py (scripts run from this folder's path)

KCAL_TO_EV = 0.0433641
RESULTS = Path(__file__).resolve().parent / "results"


def load_aspirin(path: str):
    d = np.load(path)
    z = torch.as_tensor(d["z"], dtype=torch.long)
    R = torch.as_tensor(d["R"], dtype=torch.float32)
    E = torch.as_tensor(d["E"][:, 0] * KCAL_TO_EV, dtype=torch.float64)
    F = torch.as_tensor(d["F"] * KCAL_TO_EV, dtype=torch.float32)
    return z, R, E, F


def demo_architecture(backbone: str) -> dict:
    """The architecture fields of the demo config (``empp-ff train`` without a config) on ``backbone``."""
    from dataclasses import fields

    from empp_ff.model.spec import Architecture
    from empp_ff.train.config import load_config

    model = load_config(None, [f"model.backbone={backbone}"]).model
    return {f.name: getattr(model, f.name) for f in fields(Architecture)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", default="/work/shared/data/md17_aspirin.npz")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--masks", type=int, nargs="+", default=[0, 1, 3])
    ap.add_argument("--backbones", nargs="+", default=["mace"], help="model.backbone names (mace, torchmd_et)")
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--demo-architecture", action="store_true",
                    help="each backbone's demo architecture (empp-ff train without a config) instead of the "
                         "benchmark's MACE (correlation 3, max_ell 3) at --channels")
    ap.add_argument("--out", default=str(RESULTS / "empp_step_time_cpu"))
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    load_start = list(os.getloadavg())
    from empp_ff.empp.config import EMPPConfig
    from empp_ff.empp.module import EMPPModule
    from empp_ff.model.backbone import build_backbone
    from empp_ff.model.potential import Potential
    from empp_ff.model.spec import BackboneSpec
    from empp_ff.testing.batches import collate, molecule_graph

    z, R, E, F = load_aspirin(args.data)
    species = sorted(set(z.tolist()))
    n_atoms = z.shape[0]
    e0 = float(E.mean()) / n_atoms  # one reference energy per atom (single composition)
    e_atom = (E - e0 * n_atoms) / n_atoms
    stats = dict(
        energy_per_atom_mean=float(e_atom.mean()),
        energy_per_atom_std=float(e_atom.std()),
        force_scale=float(F.pow(2).mean().sqrt()),
    )
    # The cutoff comes first: the neighbour count the backbones normalise by is taken at it.
    architectures = {name: demo_architecture(name) for name in args.backbones} if args.demo_architecture else {}
    cutoffs = {arch["r_max"] for arch in architectures.values()} or {5.0}
    if len(cutoffs) != 1:
        raise SystemExit(f"the demo architectures of {args.backbones} differ in r_max ({sorted(cutoffs)}); "
                         "time them in separate runs")
    r_max = cutoffs.pop()
    g0 = molecule_graph(R[0], z, r_max)
    chemistry = dict(atomic_numbers=species, atomic_energies=[e0] * len(species),
                     avg_num_neighbors=g0.edge_index.shape[1] / n_atoms, scale=float(F.pow(2).mean().sqrt()))
    if args.demo_architecture:
        specs = {name: BackboneSpec(**arch, **chemistry) for name, arch in architectures.items()}
    else:
        specs = {name: BackboneSpec(backbone=name, r_max=r_max, num_channels=args.channels, max_L=1,
                                    num_interactions=2, dtype="float32", **chemistry) for name in args.backbones}

    rng = torch.Generator().manual_seed(0)
    total = args.warmup + args.steps
    frames = [torch.randint(R.shape[0], (args.batch_size,), generator=rng) for _ in range(total)]
    batches = []
    for idx in frames:
        graphs = [molecule_graph(R[i], z, r_max, energy=float(E[i]), forces=F[i]) for i in idx.tolist()]
        batches.append(collate(graphs))

    # Build every variant first, then interleave their steps (round robin) so that load
    # changes on a shared machine hit all variants alike. Wall time and process CPU time
    # (all threads) are both recorded.
    runs = {}
    for (name, spec), n in [(item, n) for item in specs.items() for n in args.masks]:
        torch.manual_seed(0)
        backbone = build_backbone(spec)
        potential = Potential(backbone)
        params = list(backbone.parameters())
        cfg = EMPPConfig(enabled=n > 0, num_masks=max(n, 1))
        empp = EMPPModule(cfg, backbone, stats) if n > 0 else None
        if empp is not None:
            params += list(empp.parameters())
        variant = "no_empp" if n == 0 else f"empp_n{n}"
        runs[variant if name == "mace" else f"{name}/{variant}"] = dict(
            backbone=backbone, potential=potential, empp=empp, cfg=cfg,
            opt=torch.optim.Adam(params, lr=1e-4), gen=torch.Generator().manual_seed(1),
            wall=[], cpu=[], empp_fwd=[],
        )

    def step(run, b, timed):
        t0, c0 = time.perf_counter(), time.process_time()
        out = run["potential"](b.positions, b.atomic_numbers, b.edge_index, b.shifts, b.batch, b.num_graphs,
                               compute_forces=True, create_graph=True)
        loss = torch.mean((out["energy"] - b.energy.float()) ** 2) + 80.0 * torch.mean((out["forces"] - b.forces) ** 2)
        if run["empp"] is not None:
            t1 = time.perf_counter()
            aux = run["empp"](run["backbone"], b, run["gen"])
            if timed:
                run["empp_fwd"].append(time.perf_counter() - t1)
            loss = loss + run["cfg"].weight * aux["loss"]
        run["opt"].zero_grad(set_to_none=True)
        loss.backward()
        run["opt"].step()
        if timed:
            run["wall"].append(time.perf_counter() - t0)
            run["cpu"].append(time.process_time() - c0)

    for s, b in enumerate(batches):
        for key, run in runs.items():
            step(run, b, timed=s >= args.warmup)
        print(f"step {s + 1}/{total}: " + ", ".join(f"{k} {r['wall'][-1]:.2f}s" for k, r in runs.items() if r["wall"]),
              flush=True)

    results = {}
    for key, run in runs.items():
        results[key] = {
            "median_step_s": statistics.median(run["wall"]),
            "min_step_s": min(run["wall"]),
            "median_step_cpu_s": statistics.median(run["cpu"]),
            "steps_s": run["wall"],
            "steps_cpu_s": run["cpu"],
            "median_empp_forward_s": statistics.median(run["empp_fwd"]) if run["empp_fwd"] else None,
        }

    for key, r in results.items():  # relative to the no-EMPP run of the same backbone
        prefix = key.rpartition("/")[0]
        own = results.get(f"{prefix}/no_empp" if prefix else "no_empp", {})
        base, base_cpu, base_min = own.get("median_step_s"), own.get("median_step_cpu_s"), own.get("min_step_s")
        r["ratio_vs_no_empp"] = r["median_step_s"] / base if base else None
        r["cpu_ratio_vs_no_empp"] = r["median_step_cpu_s"] / base_cpu if base_cpu else None
        r["min_ratio_vs_no_empp"] = r["min_step_s"] / base_min if base_min else None
    mace_base = results.get("no_empp", {}).get("median_step_cpu_s")
    for key, r in results.items():
        r["cpu_ratio_vs_mace_no_empp"] = r["median_step_cpu_s"] / mace_base if mace_base else None
    report = {
        "benchmark": "empp_step_time",
        "model": ("the demo architecture of each backbone: MACE 32x0e+32x1o (max_L=1), 2 interactions, "
                  "correlation 2, r_max 5, float32; torchmd_et 32 channels, 2 attention layers, 8 heads, 32 RBF"
                  if args.demo_architecture else
                  f"MACE {args.channels}x0e+{args.channels}x1o (max_L=1), 2 interactions, correlation 3, max_ell 3, "
                  "r_max 5, float32"
                  + (f"; torchmd_et: {args.channels} channels, 2 attention layers, 8 heads, 32 RBF, r_max 5, float32"
                     if "torchmd_et" in args.backbones else "")),
        "specs": {name: spec.to_dict() for name, spec in specs.items()},
        "backbones": args.backbones,
        "data": os.path.basename(args.data),
        "batch_size": args.batch_size,
        "atoms_per_molecule": n_atoms,
        "edges_per_molecule": int(g0.edge_index.shape[1]),
        "loss": "MSE(E) + 80 MSE(F) [+ 50 EMPP]",
        "empp": {k: v for k, v in EMPPConfig().to_dict().items() if k not in ("enabled", "num_masks")},
        "warmup_steps": args.warmup,
        "timed_steps": args.steps,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        "load_average_at_start": load_start,
        "load_average_at_end": list(os.getloadavg()),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "shared_machine_note": "CPU shared with other processes (2 cores, load average ~6): wall and CPU "
        "times are inflated and noisy; the min over steps is the least disturbed figure",
        "results": results,
        "target": "empp_n1 <= 1.5 x no_empp",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# EMPP training-step time (CPU)",
        "",
        f"{report['model']}; batch {args.batch_size} × aspirin ({n_atoms} atoms); {report['loss']}; Adam.",
        f"torch {report['torch']}, {report['cpu']}, {report['threads']} threads; "
        f"load average (1/5/15 min) at start {', '.join(f'{x:.2f}' for x in load_start)}, "
        f"at end {', '.join(f'{x:.2f}' for x in report['load_average_at_end'])} (shared machine).",
        f"Median of {args.steps} steps after {args.warmup} warm-up steps; variants interleaved step by step.",
        "Wall time is inflated by the other processes; process CPU time (both threads) is the steadier figure.",
        "",
        "Ratios are to the no-EMPP run of the same backbone; the last column to MACE without EMPP.",
        "",
        "| run | median step wall (s) | × no EMPP (wall) | min step wall (s) | × no EMPP (min) | median step CPU (s) | × no EMPP (CPU) | EMPP forward wall (s) | CPU × MACE no EMPP |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in results.items():
        ratio = f"{r['ratio_vs_no_empp']:.2f}" if r["ratio_vs_no_empp"] else "—"
        cratio = f"{r['cpu_ratio_vs_no_empp']:.2f}" if r["cpu_ratio_vs_no_empp"] else "—"
        ef = f"{r['median_empp_forward_s']:.3f}" if r["median_empp_forward_s"] else "—"
        mratio = f"{r['min_ratio_vs_no_empp']:.2f}" if r["min_ratio_vs_no_empp"] else "—"
        lines.append(f"| {key} | {r['median_step_s']:.3f} | {ratio} | {r['min_step_s']:.3f} | {mratio} | "
                     f"{r['median_step_cpu_s']:.3f} | {cratio} | {ef} | "
                     f"{r['cpu_ratio_vs_mace_no_empp'] or float('nan'):.2f} |")
    lines += ["", f"Target: {report['target']}.", ""]
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
