"""Speed of pair_style empp in LAMMPS vs the raw model call (the floor) and the ASE
calculator, for aspirin (21 atoms) and a periodic water/methanol box (1000+ atoms),
with 1 and 2 MPI ranks.

    python benchmarks/lammps_speed.py [--n-side 9] [--steps 5] [--channels 8] [--fold-no]
    python benchmarks/lammps_speed.py --scaling [--sizes 9,14,20] [--steps 3]

Writes benchmarks/results/lammps_speed_cpu.json and .md; with --scaling (MPI
scaling of the full-shell and halo modes on 2.6k-29k-atom boxes, see
_lammps_scaling.py) lammps_scaling_cpu.json and .md instead. Every process uses one
torch thread (OMP_NUM_THREADS=1, `pair_style empp threads 1`) and the TorchScript
profiling executor off (the plugin's default, set the same way for the Python
runs). The model is a random-weight MACE (r_max 5 A, 2 interactions, float64):
cost, not chemistry. The first model calls (load, warm-up) are excluded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _machine import cpu_model  # benchmarks/_machine.py (scripts run from this folder's path)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "md_examples" / "lammps"))


def loadavg():
    return [round(v, 2) for v in os.getloadavg()]


def floor_ms(model_path, atoms, repeats):
    """The bare model call on the periodic N-atom graph (neighbour list excluded)."""
    import torch

    from empp_ff.neighbours import neighbour_graph

    model = torch.jit.load(str(model_path))
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


LMP_INPUT = """
units metal
atom_style atomic
boundary p p p
newton on
read_data {data}
pair_style empp threads 1 {extra}
pair_coeff * * {model} H C O
neighbor 1.0 bin
neigh_modify every 1 delay 0 check yes
timestep 0.0005
velocity all create 300 4928 mom yes rot yes dist gaussian
fix 1 all nve
thermo 1000
run {warmup}
run {steps}
"""


def lammps_ms(model_path, data, np_ranks, steps, warmup=2, extra=""):
    from empp_ff.inference.lammps.runner import lammps_command, lammps_env

    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "in.bench").write_text(
            LMP_INPUT.format(data=data, model=model_path, steps=steps, warmup=warmup, extra=extra)
        )
        env = lammps_env()
        env["OMP_NUM_THREADS"] = "1"
        proc = subprocess.run(
            lammps_command(np_ranks) + ["-in", "in.bench", "-log", "none", "-nocite"],
            cwd=tmp, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout[-3000:])
    loops = re.findall(r"Loop time of (\S+) on (\d+) procs for (\d+) steps", proc.stdout)
    t, _, n = loops[-1]
    ghosts = re.findall(r"Nghost:\s+(\S+) ave", proc.stdout)
    return 1e3 * float(t) / int(n), float(ghosts[-1]) if ghosts else None


def scaling(args, model, work, results):
    from _lammps_scaling import MODES, markdown, run_case, summarise
    from make_data import liquid_box, write

    results["boxes"] = {}
    for n_side in (int(v) for v in args.sizes.split(",")):
        atoms = liquid_box(n_side)
        data = work / f"box{n_side}.data"
        write(atoms, data)
        box = {"atoms": len(atoms), "box_A": float(atoms.cell.lengths()[0]), "loadavg_before": loadavg(), "runs": {}}
        for mode in MODES:
            for npr in (1, 2):
                box["runs"][f"{mode} np{npr}"] = run_case(model, data, mode, npr, args.steps, args.warmup)
                print(len(atoms), mode, npr, json.dumps(box["runs"][f"{mode} np{npr}"]), flush=True)
        box["loadavg_after"] = loadavg()
        box["summary"] = summarise(box["runs"])
        results["boxes"][str(len(atoms))] = box
        print(json.dumps(box["summary"], indent=1), flush=True)
    return markdown(results)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scaling", action="store_true",
                    help="MPI scaling of `halo no` vs `halo yes` on boxes of --sizes (instead of the overhead table)")
    ap.add_argument("--sizes", default="9,14,20", help="--scaling: box sizes, n^3 molecules each (9 -> 2628 atoms)")
    ap.add_argument("--warmup", type=int, default=1, help="--scaling: untimed MD steps before the timed run")
    ap.add_argument("--n-side", type=int, default=9,
                    help="box of n^3 molecules (9 -> 2628 atoms, the md_examples box; 7 -> 1239)")
    ap.add_argument("--fold-no", action="store_true",
                    help="also time `pair_style empp fold no` on the box (slow: every ghost is a node)")
    ap.add_argument("--steps", type=int, default=5, help="timed MD steps per LAMMPS run (large system)")
    ap.add_argument("--aspirin-steps", type=int, default=300)
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--out", default=None, help="results path without suffix (default: results/lammps_speed_cpu, "
                                                 "or lammps_scaling_cpu with --scaling)")
    args = ap.parse_args()
    args.out = args.out or str(ROOT / "benchmarks" / "results" / ("lammps_scaling_cpu" if args.scaling
                                                                   else "lammps_speed_cpu"))

    import torch

    from empp_ff.inference.lammps.build import build_plugin
    from empp_ff.testing.models import make_model

    torch.set_num_threads(1)
    torch._C._set_graph_executor_optimize(False)  # as the plugin (jit_optimize no)
    build_plugin()
    work = Path(tempfile.mkdtemp(prefix="empp_bench_"))
    model = make_model(work / "bench.pt", atomic_numbers=(1, 6, 8), dtype="float64",
                       num_channels=args.channels, num_interactions=2, r_max=5.0, perturb=0.0)
    results = {
        "command": "python " + " ".join([sys.argv[0]] + sys.argv[1:]),
        "machine": {"cpu": cpu_model(), "ncpu": os.cpu_count(), "platform": platform.platform()},
        "torch": torch.__version__,
        "model": {"r_max": 5.0, "num_interactions": 2, "num_channels": args.channels, "dtype": "float64",
                  "weights": "random (cost only)"},
        "loadavg_start": loadavg(),
        "uptime_start": uptime(),
    }
    table = scaling(args, model, work, results) if args.scaling else overhead(args, model, work, results)
    results["loadavg_end"] = loadavg()

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    title = "MPI scaling" if args.scaling else "speed"
    lines = [
        f"# pair_style empp {title} (CPU)",
        "",
        f"Command: `{results['command']}`  ",
        f"Machine: {results['machine']['cpu']}, {results['machine']['ncpu']} CPUs ({results['machine']['platform']}), "
        f"torch {results['torch']}  ",
        f"Load average (1/5/15 min) at start {results['loadavg_start']}, end {results['loadavg_end']} "
        f"(`uptime` at start: {results['uptime_start']}; other jobs may share the CPUs: treat differences "
        "below ~20% as noise).  ",
        f"Model: random-weight MACE, r_max 5 A, 2 interactions, {args.channels} channels, float64; "
        "1 torch thread per process; profiling executor off.",
        "",
    ] + table + [""]
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "n/a"


def overhead(args, model, work, results):
    """LAMMPS vs the bare model call and the ASE calculator (aspirin and one box)."""
    from make_data import aspirin, liquid_box, write

    systems = {"aspirin": aspirin(), "box": liquid_box(args.n_side)}
    results["systems"] = {}
    for name, atoms in systems.items():
        write(atoms, work / f"{name}.data")
        steps = args.aspirin_steps if name == "aspirin" else args.steps
        repeats = 300 if name == "aspirin" else 3
        row = {"atoms": len(atoms), "box_A": float(atoms.cell.lengths()[0])}
        row["floor_ms"], row["edges"] = floor_ms(model, atoms, repeats)
        row["ase_ms"] = ase_ms(model, atoms, repeats)
        for npr in (1, 2):
            ms, ghosts = lammps_ms(model, work / f"{name}.data", npr, steps)
            row[f"lammps_np{npr}_ms"] = ms
            row[f"lammps_np{npr}_ghosts_per_rank"] = ghosts
        if name == "box" and args.fold_no:
            ms, ghosts = lammps_ms(model, work / f"{name}.data", 1, max(2, steps // 2), extra="halo no fold no")
            row["lammps_np1_fold_no_ms"] = ms
        row["overhead_np1_vs_floor"] = row["lammps_np1_ms"] / row["floor_ms"] - 1.0
        row["speedup_np2_vs_np1"] = row["lammps_np1_ms"] / row["lammps_np2_ms"]
        row["loadavg_after"] = loadavg()
        results["systems"][name] = row
        print(name, json.dumps(row, indent=1), flush=True)
    lines = [
        "| system | atoms | edges | floor (model call) ms | ASE calculator ms | LAMMPS 1 rank ms/step | "
        "LAMMPS 2 ranks ms/step | overhead vs floor | 2-rank speed-up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["systems"].items():
        ase = f"{r['ase_ms']:.1f}" if r["ase_ms"] is not None else "n/a"
        lines.append(
            f"| {name} | {r['atoms']} | {r['edges']} | {r['floor_ms']:.1f} | {ase} | {r['lammps_np1_ms']:.1f} | "
            f"{r['lammps_np2_ms']:.1f} | {100 * r['overhead_np1_vs_floor']:+.0f}% | {r['speedup_np2_vs_np1']:.2f}x |"
        )
    box = results["systems"]["box"]
    if "lammps_np1_fold_no_ms" in box:
        lines += ["", "Box without folding (`pair_style empp halo no fold no`: every ghost atom is a graph node), "
                      f"1 rank: {box['lammps_np1_fold_no_ms']:.1f} ms/step."]
    return lines


if __name__ == "__main__":
    main()
