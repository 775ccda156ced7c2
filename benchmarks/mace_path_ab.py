#!/usr/bin/env python
"""MACE path A/B: this tree against a reference tree (a git worktree of an earlier
commit), on the same machine at the same time.

    git worktree add /tmp/ref edac378      # e.g. the tree before the backbone interface
    python benchmarks/mace_path_ab.py --reference /tmp/ref [--rounds 2]

1. Files: each tree, in its own process, exports the benchmark MACE of
   ase_md_speed.py (32 ch, float32) and of lammps_speed.py (8 ch, float64), both
   with random weights from seed 0.
2. Same model: the TorchScript code of every submodule and method, the weights, and
   energy and forces on aspirin and the 1050-atom water box, compared between the
   two trees' files. Identical code and weights mean the same work per call.
3. ASE: this tree's ``ase_md_speed.py --formats pt`` on each tree's package, the two
   running at once, each pinned to its own core with one torch thread; the cores swap
   every round. Each
   run's MACECalculator (mace-torch, the same in both) is the control of its core.
4. LAMMPS: ``pair_style empp`` (one build of the plugin: calculators/ and the pair
   style's Python side are the same in both trees, checked) on each tree's 8-ch
   file, aspirin and the water box, one rank, the files alternating per round.
5. Training step: each tree's ``empp_step_time.py`` (MACE 64 ch, no EMPP, n = 1, n = 3),
   paired as in 3.
6. End-to-end: ``empp-ff train`` of the demo's data, architecture and schedule with EMPP
   as the auxiliary loss, paired as in 3, one seed per round: epoch time and test metrics.

Writes benchmarks/results/mace_path_ab_cpu.json and .md (or ``--out``).

Part 3 runs this tree's ase_md_speed.py on the reference's package, so the reference must
have the helpers it imports (``empp_ff.testing.benchmarking``'s ``interleaved``,
``MDRunner``, ``empp_ff.testing.structures``' ``water_box``: the trees since the
benchmarks became thin scripts over the package, issue 27). Against an older reference
(the committed results' edac378 among them) run ``--parts step,train,lammps``, or check
out the benchmarks of that time. Parts 5 and 6 run each tree's own scripts and commands;
part 5 compares like with like only where both trees' empp_step_time.py time the same step
(since issue 27 it times the package's own training step, before it a loss of its own).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from empp_ff.testing.benchmarking import cpu_model, load_average, write_results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# Run by each tree's Python (PYTHONPATH = that tree): the two benchmark models.
EXPORT_SCRIPT = """
import sys
from pathlib import Path
import empp_ff
from empp_ff.export import export_potential
from empp_ff.testing.models import demo_potential, demo_spec, make_model
out, tree = Path(sys.argv[1]), Path(sys.argv[2]).resolve()
assert Path(empp_ff.__file__).resolve().is_relative_to(tree), (empp_ff.__file__, tree)
spec = demo_spec(num_channels=32, max_L=1, num_interactions=2, correlation=3, r_max=5.0, dtype="float32",
                 radial_mlp=[64, 64, 64], mlp_irreps="16x0e", avg_num_neighbors=20.0)
export_potential(demo_potential(spec, seed=0), out / "ase.pt")
make_model(out / "lammps.pt", atomic_numbers=(1, 6, 8), dtype="float64", num_channels=8, num_interactions=2,
           r_max=5.0, perturb=0.0)
"""

# The end-to-end run both trees train: the demo's data, architecture and schedule with EMPP
# as the auxiliary loss (keys that both trees know; the reference may predate model.backbone).
TRAIN_CONFIG = """\
data: {path: "", n_train: 200, n_val: 50, n_test: 250}
model: {num_channels: 32, max_L: 1, num_interactions: 2, correlation: 2, radial_mlp: [32, 32]}
train: {max_epochs: 12, batch_size: 5, lr: 0.01, warmup_epochs: 1.0, threads: 1}
empp: {enabled: true, num_masks: 1, weight: 1.0}
"""


def git_head(tree: Path) -> str:
    return subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], text=True,
                          capture_output=True, check=True).stdout.strip()


def tree_env(tree: Path) -> dict:
    return dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def export_files(trees: dict, work: Path) -> dict:
    files = {}
    for name, tree in trees.items():
        out = work / name
        out.mkdir()
        subprocess.run([sys.executable, "-c", EXPORT_SCRIPT, str(out), str(tree)], env=tree_env(tree),
                       check=True, cwd=work)
        files[name] = {"ase": out / "ase.pt", "lammps": out / "lammps.pt"}
    return files


def _methods_code(module) -> dict:
    """{submodule.method: TorchScript code} of a loaded ScriptModule (no source ranges)."""
    code = {}
    for sub_name, sub in module.named_modules():
        for method in sub._c._method_names():
            code[f"{sub_name or '<root>'}.{method}"] = sub._c._get_method(method).code
    return code


def _energy_forces(path: Path, atoms) -> tuple:
    from empp_ff.inference.calculator import EMPPCalculator

    a = atoms.copy()
    a.calc = EMPPCalculator(str(path), device="cpu")
    return a.get_potential_energy(), a.get_forces()


def compare_files(files: dict, systems: dict) -> dict:
    import torch

    out = {}
    for kind in ("ase", "lammps"):
        a, b = (torch.jit.load(str(files[name][kind])) for name in ("this", "reference"))
        code_a, code_b = _methods_code(a), _methods_code(b)
        sa, sb = a.state_dict(), b.state_dict()
        row = {
            "methods": len(code_a),
            "methods_only_here": sorted(set(code_a) - set(code_b)),
            "methods_only_in_reference": sorted(set(code_b) - set(code_a)),
            "methods_with_different_code": sorted(k for k in set(code_a) & set(code_b) if code_a[k] != code_b[k]),
            "tensors": len(sa),
            "weights_identical": sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa),
        }
        for sys_name, atoms in systems.items():
            (ea, fa), (eb, fb) = (_energy_forces(files[name][kind], atoms) for name in ("this", "reference"))
            row[sys_name] = {"energy_diff_eV": abs(ea - eb), "max_force_diff_eV_per_A": float(np.abs(fa - fb).max())}
        out[kind] = row
    return out


def run_pinned_pair(trees: dict, cores: dict, work: Path, tag: str, command) -> None:
    """Run ``command(name, tree) -> (argv, cwd)`` for both trees at once, each on its own
    core (``cores``) with that tree's package; logs in ``work/<tag>_<name>.log``."""
    procs = {}
    for name, tree in trees.items():
        argv, cwd = command(name, tree)
        log = open(work / f"{tag}_{name}.log", "w")
        procs[name] = (subprocess.Popen(["taskset", "-c", str(cores[name]), *argv], env=tree_env(tree), cwd=cwd,
                                        stdout=log, stderr=subprocess.STDOUT), log)
    for name, (proc, log) in procs.items():
        code = proc.wait()
        log.close()
        if code != 0:
            raise RuntimeError(f"{tag} of {name} failed (exit {code}): see {log.name}")


def paired_run(trees: dict, cores: dict, work: Path, script: str, script_args: list, tag: str,
               own_script: bool = True) -> dict:
    """``benchmarks/<script>`` (each tree's own, or with ``own_script=False`` this tree's for
    both) on both trees' packages at once, each pinned to its own core; {tree: the results
    JSON it wrote}."""
    outs = {name: work / f"{tag}_{name}" for name in trees}

    def command(name, tree):
        script_tree = tree if own_script else ROOT
        return ([sys.executable, str(script_tree / "benchmarks" / script), *script_args, "--out", str(outs[name])],
                tree / "benchmarks")

    run_pinned_pair(trees, cores, work, tag, command)
    return {name: json.loads(out.with_suffix(".json").read_text()) for name, out in outs.items()}


def ase_round(trees: dict, cores: dict, work: Path, args, index: int) -> dict:
    """This tree's ase_md_speed.py (.pt, one thread; the same driver, each tree's package) on
    both trees at once; steps/s per tree and system."""
    reports = paired_run(trees, cores, work, "ase_md_speed.py",
                         ["--threads", "1", "--formats", "pt", "--aspirin-steps", str(args.aspirin_steps),
                          "--water-steps", str(args.water_steps)], f"ase_round{index}", own_script=False)
    return {name: {"core": cores[name], **{
        system: {"pt_steps_per_s": r["empp"]["steps_per_s"], "mace_steps_per_s": r["mace"]["steps_per_s"],
                 "floor_steps_per_s": r["floor"]["steps_per_s"], "pt_over_mace": r["empp_speedup_vs_mace"]}
        for system, r in report["results"].items()}} for name, report in reports.items()}


def step_round(trees: dict, cores: dict, work: Path, args, index: int) -> dict:
    """empp_step_time.py (MACE training step without and with EMPP, one thread) of both
    trees at once; median seconds per step per tree and variant."""
    reports = paired_run(trees, cores, work, "empp_step_time.py",
                         ["--threads", "1", "--steps", str(args.train_steps), args.data], f"step_round{index}")
    return {name: {"core": cores[name], **{variant: r["median_step_s"] for variant, r in report["results"].items()}}
            for name, report in reports.items()}


def train_round(trees: dict, cores: dict, work: Path, args, index: int) -> dict:
    """``empp-ff train`` of TRAIN_CONFIG (seed 1 + index) by both trees at once, each pinned
    to its own core; per tree the median epoch time and the test metrics."""
    import csv

    config = work / "train.yaml"
    config.write_text(TRAIN_CONFIG)
    run_dirs = {name: work / f"train_round{index}_{name}" for name in trees}

    def command(name, tree):
        return ([sys.executable, "-m", "empp_ff.cli", "train", str(config), "--set", f"run_dir={run_dirs[name]}",
                 f"seed={1 + index}", f"train.max_epochs={args.train_epochs}"], work)

    run_pinned_pair(trees, cores, work, f"train_round{index}", command)
    rows = {}
    for name, run_dir in run_dirs.items():
        with open(run_dir / "metrics.csv") as fh:
            wall = [float(r["wall_time_s"]) for r in csv.DictReader(fh) if r.get("wall_time_s")]
        test = json.loads((run_dir / "test_metrics.json").read_text())
        rows[name] = {"core": cores[name], "seed": 1 + index,
                      "median_epoch_s": statistics.median(np.diff([0.0] + wall)), "total_s": wall[-1],
                      "test": test}
    return rows


def lammps_rounds(files: dict, systems: dict, work: Path, args) -> dict:
    from empp_ff.inference.lammps.inputs import write_data
    from empp_ff.testing.lammps_timing import lammps_ms
    from empp_ff.testing.structures import aspirin

    times = {}
    # LAMMPS needs a box: aspirin in a 30 A one (as lammps_speed.py runs it)
    for sys_name, atoms in {**systems, "aspirin_21": aspirin(box=30.0)}.items():
        data = work / f"{sys_name}.data"
        write_data(atoms, data, ["H", "C", "O"])
        steps = args.lammps_aspirin_steps if sys_name.startswith("aspirin") else args.lammps_box_steps
        for _ in range(args.rounds):
            for name in ("this", "reference"):  # alternate: load hits both alike
                ms, _ = lammps_ms(files[name]["lammps"], data, 1, steps)
                times.setdefault(sys_name, {}).setdefault(name, []).append(ms)
    return {s: {name: {"ms_per_step": statistics.median(v), "runs": v} for name, v in per.items()}
            for s, per in times.items()}


def summarise_ase(rounds: list) -> dict:
    """Per system, the median over rounds of each tree's .pt steps/s and .pt / MACE."""
    systems = [k for k in rounds[0]["this"] if k != "core"]
    out = {}
    for s in systems:
        row = {}
        for name in ("this", "reference"):
            row[name] = {key: statistics.median(r[name][s][key] for r in rounds)
                         for key in ("pt_steps_per_s", "mace_steps_per_s", "pt_over_mace")}
        row["this_over_reference_pt"] = row["this"]["pt_steps_per_s"] / row["reference"]["pt_steps_per_s"]
        row["this_over_reference_pt_over_mace"] = row["this"]["pt_over_mace"] / row["reference"]["pt_over_mace"]
        out[s] = row
    return out


def summarise_steps(rounds: list) -> dict:
    variants = [k for k in rounds[0]["this"] if k != "core"]
    out = {}
    for v in variants:
        this = statistics.median(r["this"][v] for r in rounds)
        ref = statistics.median(r["reference"][v] for r in rounds)
        out[v] = {"this_s": this, "reference_s": ref, "this_over_reference": this / ref}
    return out


def _same_model_md(report: dict) -> list:
    lines = ["## Same model", "",
             "| file | methods | methods with different code | only here / only in reference | weights identical | "
             "max ΔE aspirin, box (eV) | max ΔF aspirin, box (eV/Å) |",
             "|---|---|---|---|---|---|---|"]
    for kind, r in report["same_model"].items():
        systems = [k for k in r if isinstance(r[k], dict)]
        lines.append(
            f"| {kind}.pt | {r['methods']} | {len(r['methods_with_different_code'])} | "
            f"{len(r['methods_only_here'])} / {len(r['methods_only_in_reference'])} | {r['weights_identical']} | "
            + ", ".join(f"{r[s]['energy_diff_eV']:.1e}" for s in systems) + " | "
            + ", ".join(f"{r[s]['max_force_diff_eV_per_A']:.1e}" for s in systems) + " |")
    return lines


def _ase_md(report: dict) -> list:
    lines = ["", f"## ASE MD (ase_md_speed.py --formats pt, {len(report['ase_rounds'])} rounds, both trees at once "
             "on separate cores, cores swapped each round; medians over rounds)", "",
             "| system | .pt steps/s this | .pt steps/s reference | this / reference | .pt / MACE this | "
             ".pt / MACE reference |", "|---|---|---|---|---|---|"]
    for s, r in report["ase_summary"].items():
        lines.append(f"| {s} | {r['this']['pt_steps_per_s']:.3g} | {r['reference']['pt_steps_per_s']:.3g} | "
                     f"{r['this_over_reference_pt']:.3f} | {r['this']['pt_over_mace']:.3f} | "
                     f"{r['reference']['pt_over_mace']:.3f} |")
    lines += ["", "Per round (core: .pt steps/s, MACE steps/s):", ""]
    for i, rnd in enumerate(report["ase_rounds"]):
        cells = [f"{name} on core {rnd[name]['core']}: " + "; ".join(
            f"{s} {v['pt_steps_per_s']:.3g} / {v['mace_steps_per_s']:.3g}" for s, v in rnd[name].items() if s != "core")
            for name in ("this", "reference")]
        lines.append(f"- round {i}: " + " | ".join(cells))
    return lines


def _step_md(report: dict) -> list:
    lines = ["", f"## Training step (empp_step_time.py: MACE 64 ch, batch 8 aspirin, one thread; "
             f"{len(report['step_rounds'])} rounds, both trees at once, cores swapped; medians over rounds)", "",
             "| variant | s/step this | s/step reference | this / reference |", "|---|---|---|---|"]
    for v, r in report["step_summary"].items():
        lines.append(f"| {v} | {r['this_s']:.3f} | {r['reference_s']:.3f} | {r['this_over_reference']:.3f} |")
    return lines


def _train_md(report: dict) -> list:
    t = report["train_summary"]
    keys = [k for k in t["this"] if "_mae_" in k or "_rmse_" in k]
    lines = ["", f"## End-to-end training (empp-ff train: the demo data, architecture and schedule, EMPP "
             f"auxiliary n=1, one thread; {len(report['train_rounds'])} runs per tree with seeds "
             f"{[r['this']['seed'] for r in report['train_rounds']]}, both trees at once, cores swapped)", "",
             f"Median epoch: this {t['this']['median_epoch_s']:.1f} s, reference "
             f"{t['reference']['median_epoch_s']:.1f} s (this / reference {t['this_over_reference_epoch']:.3f}).", "",
             "| test metric | this (per seed) | reference (per seed) |", "|---|---|---|"]
    for k in keys:
        lines.append(f"| {k} | {', '.join(f'{v:.4g}' for v in t['this'][k])} | "
                     f"{', '.join(f'{v:.4g}' for v in t['reference'][k])} |")
    return lines


def _lammps_md(report: dict) -> list:
    lines = ["", f"## LAMMPS (pair_style empp, 1 rank, 8-ch float64 file, {report['rounds']} alternating rounds)",
             "", "| system | ms/step this | ms/step reference | this / reference |", "|---|---|---|---|"]
    for s, r in report["lammps"].items():
        lines.append(f"| {s} | {r['this']['ms_per_step']:.4g} | {r['reference']['ms_per_step']:.4g} | "
                     f"{r['this']['ms_per_step'] / r['reference']['ms_per_step']:.3f} |")
    return lines


def summarise_train(rounds: list) -> dict:
    """Medians over rounds (seeds) of each tree's epoch time and test MAEs."""
    out = {}
    for name in ("this", "reference"):
        runs = [r[name] for r in rounds]
        out[name] = {"median_epoch_s": statistics.median(r["median_epoch_s"] for r in runs),
                     **{key: [r["test"].get(key) for r in runs] for key in runs[0]["test"]
                        if isinstance(runs[0]["test"][key], (int, float))}}
    out["this_over_reference_epoch"] = out["this"]["median_epoch_s"] / out["reference"]["median_epoch_s"]
    return out


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# MACE path A/B: this tree against the reference tree (CPU)",
        "",
        f"- This tree {report['trees']['this']}, reference {report['trees']['reference']}",
        f"- CPU: {m['cpu']} ({m['ncpu']} logical CPUs); load average at start {report['loadavg_start']}, "
        f"at end {report['loadavg_end']}",
        f"- Command: `{report['command']}`",
        "",
    ] + _same_model_md(report)
    for part, section in (("ase_summary", _ase_md), ("step_summary", _step_md), ("train_summary", _train_md),
                          ("lammps", _lammps_md)):
        if report.get(part):
            lines += section(report)
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", required=True, type=Path, help="a worktree of the reference commit")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--aspirin-steps", type=int, default=100, help="ASE MD steps of aspirin (timed, per runner)")
    ap.add_argument("--water-steps", type=int, default=10)
    ap.add_argument("--lammps-aspirin-steps", type=int, default=300)
    ap.add_argument("--lammps-box-steps", type=int, default=5)
    ap.add_argument("--train-steps", type=int, default=10, help="timed training steps per empp_step_time run")
    ap.add_argument("--train-epochs", type=int, default=12, help="epochs of each end-to-end training run")
    ap.add_argument("--data", default="/work/shared/data/md17_aspirin.npz", help="empp_step_time.py's data")
    ap.add_argument("--parts", default="ase,step,train,lammps", help="which timings: ase, step, train, lammps")
    ap.add_argument("--out", default=str(RESULTS / "mace_path_ab_cpu"))
    args = ap.parse_args(argv)
    if not (args.reference / "empp_ff" / "__init__.py").is_file():
        ap.error(f"--reference {args.reference} is not a checkout of empp-ff (no empp_ff/__init__.py)")
    if (os.cpu_count() or 1) < 2:
        ap.error("the A/B pins the two trees to two different cores; this machine has one")

    import torch

    from empp_ff.inference.lammps.build import build_plugin
    from empp_ff.testing.structures import aspirin, water_box

    torch.set_num_threads(1)
    trees = {"this": ROOT, "reference": args.reference.resolve()}
    report = {
        "command": "python " + " ".join([sys.argv[0]] + sys.argv[1:]),
        "trees": {name: f"{git_head(tree)} ({tree})" for name, tree in trees.items()},
        "machine": {"cpu": cpu_model(), "ncpu": os.cpu_count(), "platform": platform.platform()},
        "torch": torch.__version__,
        "rounds": args.rounds,
        "loadavg_start": load_average(),
    }
    work = Path(tempfile.mkdtemp(prefix="empp_ab_"))
    systems = {"aspirin_21": aspirin(), "water_1050_pbc": water_box(350)}
    files = export_files(trees, work)
    report["same_model"] = compare_files(files, systems)
    print(json.dumps(report["same_model"], indent=1), flush=True)
    parts = set(args.parts.split(","))
    for part, run_round, summarise in (("ase", ase_round, summarise_ase), ("step", step_round, summarise_steps),
                                       ("train", train_round, summarise_train)):
        rounds = []
        for i in range(args.rounds if part in parts else 0):
            cores = {"this": i % 2, "reference": (i + 1) % 2}  # swapped every round
            rounds.append(run_round(trees, cores, work, args, i))
            print(json.dumps(rounds[-1]), flush=True)
        report[f"{part}_rounds"], report[f"{part}_summary"] = rounds, summarise(rounds) if rounds else {}
    if "lammps" in parts:
        build_plugin()
    report["lammps"] = lammps_rounds(files, systems, work, args) if "lammps" in parts else {}
    report["loadavg_end"] = load_average()
    text = markdown(report)
    write_results(args.out, report, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
