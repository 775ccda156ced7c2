"""Speed of pair_style empp in LAMMPS vs the raw model call (the floor) and the ASE
calculator, for aspirin (21 atoms) and a periodic box (the 1050-atom water box of
ase_md_speed.py, or with --box liquid a water/methanol box), with 1 and 2 MPI ranks,
for the TorchScript file (.pt) and the AOTInductor package (.pt2) of the same weights.

    python benchmarks/lammps_speed.py [--box water|liquid] [--n-side 9] [--steps 5] [--channels 8]
                                      [--formats pt,pt2] [--rounds 2] [--fold-no]
    python benchmarks/lammps_speed.py --scaling [--sizes 9,14,20] [--steps 3]

Writes benchmarks/results/lammps_speed_cpu.json and .md; with --scaling (MPI
scaling of the full-shell and halo modes of the .pt file on 2.6k-29k-atom boxes, see
empp_ff.testing.lammps_timing) lammps_scaling_cpu.json and .md instead. Every process uses one
torch thread (OMP_NUM_THREADS=1, `pair_style empp threads 1`) and the TorchScript
profiling executor off (the plugin's default, set the same way for the Python
runs). The LAMMPS runs of the two formats alternate, ``--rounds`` times (medians
are reported), so load from other jobs hits both alike. The model is a
random-weight MACE (r_max 5 A, 2 interactions, float64): cost, not chemistry. Its
forces pull atoms together within tens of steps, so the instability guard is off
(`min_distance 0`), as it was before the guard existed.
The first model calls (load, warm-up) are excluded. Structures, data files and the
LAMMPS runs come from the package (empp_ff.testing.structures, empp_ff.inference.lammps.inputs,
empp_ff.testing.lammps_timing); the data files' title line is empp-ff's since then (LAMMPS
ignores it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from empp_ff.testing.benchmarking import cpu_model, load_average, write_results
from empp_ff.testing.lammps_timing import (
    SCALING_MODES,
    lammps_ms,
    run_scaling_case,
    scaling_markdown,
    summarise_scaling,
)

ROOT = Path(__file__).resolve().parents[1]
ELEMENTS = ["H", "C", "O"]  # the atom types of every data file (the pair_coeff line of the runs)


def floor_ms(model_path, atoms, repeats):
    """The bare model call on the periodic N-atom graph (neighbour list excluded)."""
    import torch

    from empp_ff.export import load_model_file
    from empp_ff.neighbours import neighbour_graph

    model, _ = load_model_file(model_path)
    pos = atoms.get_positions()
    edge_index, shifts = neighbour_graph(pos, float(model.r_max), atoms.cell.array, np.asarray(atoms.pbc))
    ei = torch.tensor(edge_index)
    sh = torch.tensor(shifts)
    z = torch.tensor(atoms.get_atomic_numbers(), dtype=torch.long)
    p = torch.tensor(pos)
    times = []
    for k in range(repeats + 2):
        t = time.perf_counter()
        model(p, z, ei, sh, len(atoms), False)
        if k >= 2:
            times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times)), int(ei.shape[1])


def ase_ms(model_path, atoms, repeats):
    try:
        from empp_ff.inference.calculator import EMPPCalculator
    except ImportError:
        return None
    a = atoms.copy()
    a.calc = EMPPCalculator(str(model_path), device="cpu")
    rng = np.random.default_rng(0)
    times = []
    for k in range(repeats + 2):
        a.positions += rng.normal(scale=1e-3, size=a.positions.shape)
        t = time.perf_counter()
        a.get_forces()
        if k >= 2:
            times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def _models(args, work: Path) -> tuple:
    from empp_ff.testing.models import make_model

    kwargs = dict(atomic_numbers=(1, 6, 8), dtype="float64", num_channels=args.channels, num_interactions=2,
                  r_max=5.0, perturb=0.0)
    models, info = {}, {}
    for fmt in args.formats.split(","):
        t0 = time.perf_counter()
        models[fmt] = make_model(work / f"bench.{fmt}", **kwargs)
        info[f"{fmt}_export_seconds"] = round(time.perf_counter() - t0, 1)
        info[f"{fmt}_size_MB"] = round(models[fmt].stat().st_size / 1e6, 2)
    return models, info


def _system_row(name, atoms, models, data, args) -> dict:
    steps = args.aspirin_steps if name == "aspirin" else args.steps
    repeats = 300 if name == "aspirin" else 3
    row = {"atoms": len(atoms), "box_A": float(atoms.cell.lengths()[0])}
    runs = {}
    for fmt, model in models.items():
        row[f"floor_{fmt}_ms"], row["edges"] = floor_ms(model, atoms, repeats)
        row[f"ase_{fmt}_ms"] = ase_ms(model, atoms, repeats)
    for _ in range(args.rounds):  # the formats alternate: load hits both alike
        for npr in (1, 2):
            for fmt, model in models.items():
                ms, ghosts = lammps_ms(model, data, npr, steps)
                runs.setdefault(f"lammps_{fmt}_np{npr}_ms", []).append(ms)
                row[f"lammps_np{npr}_ghosts_per_rank"] = ghosts
    row.update({key: float(np.median(v)) for key, v in runs.items()})
    row["rounds"] = args.rounds
    if name == "box" and args.fold_no:
        row["lammps_pt_np1_fold_no_ms"], _ = lammps_ms(models["pt"], data, 1, max(2, steps // 2), extra="halo no fold no")
    for fmt in models:
        row[f"overhead_{fmt}_np1_vs_floor"] = row[f"lammps_{fmt}_np1_ms"] / row[f"floor_{fmt}_ms"] - 1.0
        row[f"speedup_{fmt}_np2_vs_np1"] = row[f"lammps_{fmt}_np1_ms"] / row[f"lammps_{fmt}_np2_ms"]
    if "pt2" in models and "pt" in models:
        for npr in (1, 2):
            row[f"speedup_pt2_vs_pt_np{npr}"] = row[f"lammps_pt_np{npr}_ms"] / row[f"lammps_pt2_np{npr}_ms"]
    row["loadavg_after"] = load_average()
    return row


def _markdown(results: dict, args) -> str:
    lines = [
        "# pair_style empp speed (CPU): TorchScript (.pt) and AOTInductor (.pt2)",
        "",
        f"Command: `{results['command']}`  ",
        f"Machine: {results['machine']['cpu']}, {results['machine']['ncpu']} CPUs ({results['machine']['platform']}), "
        f"torch {results['torch']}  ",
        f"Load average (1/5/15 min) at start {results['loadavg_start']}, end {results['loadavg_end']} "
        "(other jobs share the 2 CPUs: treat differences below ~20% as noise).  ",
        f"Model: random-weight MACE, r_max 5 A, 2 interactions, {args.channels} channels, float64; "
        "1 torch thread per process; profiling executor off. Files: " + json.dumps(results["files"]) + "  ",
        f"LAMMPS times: median of {args.rounds} alternating rounds per format.",
        "",
        "| system | atoms | edges | format | floor ms | ASE calculator ms | LAMMPS 1 rank ms/step | "
        "LAMMPS 2 ranks ms/step | overhead vs floor | 2-rank speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["systems"].items():
        for fmt in args.formats.split(","):
            ase = r[f"ase_{fmt}_ms"]
            lines.append(
                f"| {name} | {r['atoms']} | {r['edges']} | .{fmt} | {r[f'floor_{fmt}_ms']:.1f} | "
                f"{'n/a' if ase is None else f'{ase:.1f}'} | {r[f'lammps_{fmt}_np1_ms']:.1f} | "
                f"{r[f'lammps_{fmt}_np2_ms']:.1f} | {100 * r[f'overhead_{fmt}_np1_vs_floor']:+.0f}% | "
                f"{r[f'speedup_{fmt}_np2_vs_np1']:.2f}x |"
            )
    for name, r in results["systems"].items():
        if "speedup_pt2_vs_pt_np1" in r:
            lines.append(f"\n{name}: .pt2 / .pt steps/s in LAMMPS: {r['speedup_pt2_vs_pt_np1']:.2f}x (1 rank), "
                         f"{r['speedup_pt2_vs_pt_np2']:.2f}x (2 ranks).")
    box = results["systems"].get("box", {})
    if "lammps_pt_np1_fold_no_ms" in box:
        lines.append(f"\nBox without folding (`pair_style empp fold no`: every ghost atom is a graph node), "
                     f".pt, 1 rank: {box['lammps_pt_np1_fold_no_ms']:.1f} ms/step.")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--box", choices=["water", "liquid"], default="water",
                    help="water: the 1050-atom water box of ase_md_speed.py; liquid: make_data's n^3 molecules")
    ap.add_argument("--n-side", type=int, default=9,
                    help="--box liquid: n^3 molecules (9 -> 2628 atoms, the md_examples box; 7 -> 1239)")
    ap.add_argument("--fold-no", action="store_true",
                    help="also time `pair_style empp fold no` on the box (slow: every ghost is a node)")
    ap.add_argument("--steps", type=int, default=5, help="timed MD steps per LAMMPS run (large system)")
    ap.add_argument("--aspirin-steps", type=int, default=300)
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--formats", default="pt,pt2", help="model files to time: pt and/or pt2")
    ap.add_argument("--rounds", type=int, default=2, help="alternating LAMMPS rounds per format")
    ap.add_argument("--scaling", action="store_true",
                    help="MPI scaling of `halo no` vs `halo yes` on boxes of --sizes (instead of the format table)")
    ap.add_argument("--sizes", default="9,14,20", help="--scaling: box sizes, n^3 molecules each (9 -> 2628 atoms)")
    ap.add_argument("--warmup", type=int, default=1, help="--scaling: untimed MD steps before the timed run")
    ap.add_argument("--out", default=None, help="results path without suffix (default: results/lammps_speed_cpu, "
                                                 "or lammps_scaling_cpu with --scaling)")
    args = ap.parse_args()
    args.out = args.out or str(ROOT / "benchmarks" / "results" / ("lammps_scaling_cpu" if args.scaling
                                                                   else "lammps_speed_cpu"))

    import torch

    from empp_ff.inference.lammps.build import build_plugin
    from empp_ff.inference.lammps.inputs import write_data
    from empp_ff.testing.structures import aspirin, liquid_box, water_box

    torch.set_num_threads(1)
    torch._C._set_graph_executor_optimize(False)  # as the plugin (jit_optimize no)
    build_plugin()
    work = Path(tempfile.mkdtemp(prefix="empp_bench_"))
    results = {
        "command": "python " + " ".join([sys.argv[0]] + sys.argv[1:]),
        "machine": {"cpu": cpu_model(), "ncpu": os.cpu_count(), "platform": platform.platform()},
        "torch": torch.__version__,
        "model": {"r_max": 5.0, "num_interactions": 2, "num_channels": args.channels, "dtype": "float64",
                  "weights": "random (cost only)"},
        "loadavg_start": load_average(),
        "uptime_start": uptime(),
        "systems": {},
    }
    if args.scaling:
        return scaling(args, work, results)
    models, results["files"] = _models(args, work)
    systems = {"aspirin": aspirin(box=30.0), "box": water_box(350) if args.box == "water" else liquid_box(args.n_side)}
    for name, atoms in systems.items():
        write_data(atoms, work / f"{name}.data", ELEMENTS)
        results["systems"][name] = _system_row(name, atoms, models, work / f"{name}.data", args)
        print(name, json.dumps(results["systems"][name], indent=1), flush=True)
    results["loadavg_end"] = load_average()

    text = _markdown(results, args)
    write_results(args.out, results, text)
    print(text)


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "n/a"


def scaling(args, work: Path, results: dict) -> None:
    """Steps/s and parallel efficiency of 1 and 2 ranks, `halo no` vs `halo yes` (.pt file)."""
    from empp_ff.inference.lammps.inputs import write_data
    from empp_ff.testing.models import make_model
    from empp_ff.testing.structures import liquid_box

    model = make_model(work / "bench.pt", atomic_numbers=(1, 6, 8), dtype="float64",
                       num_channels=args.channels, num_interactions=2, r_max=5.0, perturb=0.0)
    results.pop("systems")
    results["boxes"] = {}
    for n_side in (int(v) for v in args.sizes.split(",")):
        atoms = liquid_box(n_side)
        data = work / f"box{n_side}.data"
        write_data(atoms, data, ELEMENTS)
        box = {"atoms": len(atoms), "box_A": float(atoms.cell.lengths()[0]), "loadavg_before": load_average(), "runs": {}}
        for mode in SCALING_MODES:
            for npr in (1, 2):
                box["runs"][f"{mode} np{npr}"] = run_scaling_case(model, data, mode, npr, args.steps, args.warmup)
                print(len(atoms), mode, npr, json.dumps(box["runs"][f"{mode} np{npr}"]), flush=True)
        box["loadavg_after"] = load_average()
        box["summary"] = summarise_scaling(box["runs"])
        results["boxes"][str(len(atoms))] = box
        print(json.dumps(box["summary"], indent=1), flush=True)
    results["loadavg_end"] = load_average()
    lines = [
        "# pair_style empp MPI scaling (CPU)",
        "",
        f"Command: `{results['command']}`  ",
        f"Machine: {results['machine']['cpu']}, {results['machine']['ncpu']} CPUs ({results['machine']['platform']}), "
        f"torch {results['torch']}  ",
        f"Load average (1/5/15 min) at start {results['loadavg_start']}, end {results['loadavg_end']} "
        f"(`uptime` at start: {results['uptime_start']}; other jobs may share the CPUs: treat differences "
        "below ~20% as noise).  ",
        f"Model: random-weight MACE, r_max 5 A, 2 interactions, {args.channels} channels, float64, TorchScript "
        "(.pt); 1 torch thread per process; profiling executor off.",
        "",
    ] + scaling_markdown(results) + [""]
    write_results(args.out, results, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
