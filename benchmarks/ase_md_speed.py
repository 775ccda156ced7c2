#!/usr/bin/env python
"""ASE MD speed: EMPPCalculator on both model-file formats vs mace's MACECalculator
on the same network.

Systems: aspirin (21 atoms, no pbc) and a periodic box of 350 water molecules
(1050 atoms, 1 g/cm^3, random orientations on a grid). For each system we time
VelocityVerlet steps/s (after warm-up) with

* ``empp``: EMPPCalculator on the TorchScript model file (``.pt``);
* ``empp_pt2``: EMPPCalculator on the AOTInductor package (``.pt2``) of the same weights;
* ``mace``: ``mace.calculators.MACECalculator`` on the *same* ScaleShiftMACE
  (our backbone's ``.mace`` module holds the same weights; saved as a .model);
* ``floor`` / ``floor_pt2``: each file's model call (forward + forces) alone, on
  precomputed edges (no neighbour list, no ASE) — the cost no calculator can beat.

All five are stepped interleaved (``empp_ff.testing.benchmarking.interleaved``). The
package's compile time and the file sizes are recorded. Weights are random (untrained):
speed does not depend on training. The structures are ``empp_ff.testing.structures``'
(``aspirin()``: rMD17 configuration 0 to the bit; before the move to the package,
md_examples/aspirin.xyz's 16-digit text of it, 5e-16 Å apart).
Writes benchmarks/results/ase_md_speed_cpu.json and .md (or ``--out``).

    python benchmarks/ase_md_speed.py [--threads 1] [--channels 32] [--formats pt,pt2]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

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

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


class FloorRunner:
    """Forward + backward of the exported module on precomputed edges (no NL, no ASE)."""

    def __init__(self, model, atoms, calc):
        import torch

        self.torch = torch
        self.model = model
        self.edge_index, self.shifts, _ = calc.neighbor_edges(atoms)
        self.pos = torch.as_tensor(atoms.positions, dtype=calc.dtype)
        self.z = torch.as_tensor(atoms.numbers, dtype=torch.long)
        self.n = len(atoms)
        self.compute_virial = False  # VelocityVerlet needs forces only (as EMPPCalculator does)
        self.optimize = calc.jit_optimize

    def step(self) -> float:
        t = time.perf_counter()
        with self.torch.jit.optimized_execution(self.optimize):
            out = self.model(self.pos, self.z, self.edge_index, self.shifts, self.n, self.compute_virial)
            out["forces"].sum().item()
        return time.perf_counter() - t


def _model_files(args, tmp: Path) -> dict:
    """The benchmark model as .pt, .pt2 (when asked) and a mace .model; compile time and sizes."""
    import torch

    from empp_ff.export import export_potential
    from empp_ff.testing.models import demo_potential, demo_spec

    spec = demo_spec(
        num_channels=args.channels, max_L=args.max_L, num_interactions=2, correlation=3,
        r_max=args.r_max, dtype=args.dtype, radial_mlp=[64, 64, 64], mlp_irreps="16x0e",
        avg_num_neighbors=20.0,
    )
    potential = demo_potential(spec, seed=0)
    files = {"pt": export_potential(potential, tmp / "model.pt"), "mace": tmp / "mace.model"}
    torch.save(potential.backbone.mace, files["mace"])
    info = {}
    if "pt2" in args.formats:
        t0 = time.perf_counter()
        files["pt2"] = export_potential(potential, tmp / "model.pt2", cpu_target=args.cpu_target)
        info["pt2_export_seconds"] = round(time.perf_counter() - t0, 1)
    info["file_size_MB"] = {k: round(p.stat().st_size / 1e6, 2) for k, p in files.items()}
    return files, info


def _runners(atoms, files, args) -> dict:
    from mace.calculators import MACECalculator

    from empp_ff.export import load_model_file
    from empp_ff.inference.calculator import EMPPCalculator

    runners = {"empp": MDRunner(atoms, cost_calculator(files["pt"]))}
    if "pt2" in files:
        runners["empp_pt2"] = MDRunner(atoms, cost_calculator(files["pt2"]))
    # MACECalculator sets torch's global default dtype (to the model's dtype here).
    runners["mace"] = MDRunner(atoms, MACECalculator(model_paths=str(files["mace"]), device="cpu",
                                                    default_dtype=args.dtype))
    for fmt, name in (("pt", "floor"), ("pt2", "floor_pt2")):
        if fmt in files:
            model, _ = load_model_file(files[fmt])
            runners[name] = FloorRunner(model, atoms, EMPPCalculator(files[fmt], device="cpu"))
    return runners


def _same_model_check(atoms, files, runners) -> dict:
    from empp_ff.inference.calculator import EMPPCalculator

    ref = atoms.copy()
    ref.calc = runners["mace"].atoms.calc
    out = {}
    for fmt in ("pt", "pt2"):
        if fmt in files:
            a = atoms.copy()
            a.calc = EMPPCalculator(files[fmt], device="cpu")
            out[fmt] = {"energy_diff_eV": abs(a.get_potential_energy() - ref.get_potential_energy()),
                        "max_force_diff_eV_per_A": float(np.abs(a.get_forces() - ref.get_forces()).max())}
    return out


def _ratios(r: dict) -> None:
    sps = {k: v["steps_per_s"] for k, v in r.items() if isinstance(v, dict) and "steps_per_s" in v}
    r["empp_speedup_vs_mace"] = sps["empp"] / sps["mace"]
    r["empp_overhead_vs_floor_pct"] = 100.0 * (sps["floor"] / sps["empp"] - 1.0)
    if "empp_pt2" in sps:
        r["pt2_speedup_vs_pt"] = sps["empp_pt2"] / sps["empp"]
        r["pt2_speedup_vs_mace"] = sps["empp_pt2"] / sps["mace"]
        r["pt2_floor_speedup_vs_pt_floor"] = sps["floor_pt2"] / sps["floor"]
        r["pt2_overhead_vs_floor_pct"] = 100.0 * (sps["floor_pt2"] / sps["empp_pt2"] - 1.0)


def _markdown(report: dict, args) -> str:
    m = report["machine"]
    lines = [
        "# ASE MD speed: EMPPCalculator (.pt and .pt2) vs MACECalculator (CPU)",
        "",
        f"- CPU: {m['cpu']} ({m['logical_cpus']} logical CPUs, shared); torch threads {args.threads}; "
        f"load average at start {m['loadavg_start']}, at end {m['loadavg_end']}",
        f"- Model: {report['model']['architecture']}, {args.dtype}, **random weights** (untrained)",
        f"- torch {report['versions']['torch']}, mace-torch {report['versions']['mace-torch']}, "
        f"ase {report['versions']['ase']}",
        f"- Files: {report['files']}",
        "- VelocityVerlet 0.5 fs, median wall time per step after warm-up; all runners are stepped "
        "interleaved (rotating order) so load from other processes hits them alike. `floor` = the "
        "model file's call (forward + forces) on precomputed edges (no neighbour list, no ASE).",
        "",
        "| system | .pt2 steps/s | .pt steps/s | MACECalculator steps/s | floor .pt2 | floor .pt | "
        ".pt2 / .pt | .pt2 / MACE | .pt / MACE |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in report["results"].items():
        pt2 = r.get("empp_pt2", {}).get("steps_per_s", float("nan"))
        fpt2 = r.get("floor_pt2", {}).get("steps_per_s", float("nan"))
        lines.append(
            f"| {name} | {pt2:.3g} | {r['empp']['steps_per_s']:.3g} | {r['mace']['steps_per_s']:.3g} | "
            f"{fpt2:.3g} | {r['floor']['steps_per_s']:.3g} | {r.get('pt2_speedup_vs_pt', float('nan')):.2f}x | "
            f"{r.get('pt2_speedup_vs_mace', float('nan')):.2f}x | {r['empp_speedup_vs_mace']:.2f}x |"
        )
    lines += ["", "Same weights in all calculators (difference to MACECalculator):", ""]
    for name, checks in report["same_model_check"].items():
        for fmt, c in checks.items():
            lines.append(f"- {name}, .{fmt}: |ΔE| = {c['energy_diff_eV']:.2e} eV, "
                         f"max |ΔF| = {c['max_force_diff_eV_per_A']:.2e} eV/Å")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--max-L", type=int, default=1)
    parser.add_argument("--r-max", type=float, default=5.0)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--formats", default="pt,pt2", help="model files to time besides MACE: pt and/or pt2")
    parser.add_argument("--cpu-target", default="portable", choices=["portable", "native"])
    parser.add_argument("--aspirin-steps", type=int, default=40)
    parser.add_argument("--water-steps", type=int, default=10)
    parser.add_argument("--water-molecules", type=int, default=350)
    parser.add_argument("--out", default=str(RESULTS / "ase_md_speed_cpu"))
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)  # entry point: set explicitly, never in the library
    load_start = load_average()
    files, file_info = _model_files(args, Path(tempfile.mkdtemp(prefix="ase_md_speed_")))
    systems = {"aspirin_21": (aspirin(), args.aspirin_steps, 5),
               f"water_{3 * args.water_molecules}_pbc": (water_box(args.water_molecules), args.water_steps, 2)}
    results, checks = {}, {}
    for name, (atoms, steps, warmup) in systems.items():
        print(f"== {name}: {len(atoms)} atoms", flush=True)
        runners = _runners(atoms, files, args)
        times = interleaved({key: runner.step for key, runner in runners.items()}, steps, warmup)
        results[name] = {key: step_rates(seconds) for key, seconds in times.items()}
        for key, value in results[name].items():
            print(f"  {key:9s} {value}", flush=True)
        checks[name] = _same_model_check(atoms, files, runners)
        results[name]["num_edges"] = int(runners["floor"].edge_index.shape[1])
        _ratios(results[name])
    from importlib import metadata as md

    report = {
        "machine": {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "torch_threads": args.threads,
                    "loadavg_start": load_start, "loadavg_end": load_average()},
        "model": {"weights": "random (untrained); speed does not depend on training",
                  "architecture": f"MACE {args.channels}x0e+{args.channels}x1o (max_L {args.max_L}), "
                                  f"2 interactions, correlation 3, max_ell 3, r_max {args.r_max} Å",
                  "dtype": args.dtype, "pt2_cpu_target": args.cpu_target},
        "files": file_info,
        "versions": {"torch": torch.__version__, "mace-torch": md.version("mace-torch"),
                     "ase": md.version("ase"), "python": platform.python_version()},
        "integrator": "ase VelocityVerlet, 0.5 fs; median time per step after warm-up; "
                      "the runners are stepped in rotating order (interleaved) so that "
                      "load from other processes on the shared CPU affects them alike",
        "same_model_check": checks,
        "results": results,
    }
    text = _markdown(report, args)
    write_results(args.out, report, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
