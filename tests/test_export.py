"""Model-file export: parity with the training-time Potential, the contract's
attributes and metadata, and clear errors for bad files.

Tiny random-weight models (8 channels) keep this fast; nothing here needs
/work/shared/data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
import torch

from empp_ff.export import (
    FORMAT_VERSION,
    TORCHSCRIPT_FORMAT_VERSION,
    ModelFileError,
    export_model,
    load_model_file,
)
from empp_ff.testing.models import demo_checkpoint
from empp_ff.train.checkpoint import build_potential, load_checkpoint

# A small distorted ethanol-like molecule (C2H6O), Å.
POSITIONS = np.array(
    [
        [0.00, 0.00, 0.00],  # C
        [1.52, 0.05, 0.02],  # C
        [2.01, 1.38, -0.10],  # O
        [-0.38, -1.02, 0.08],  # H
        [-0.40, 0.52, 0.88],  # H
        [-0.37, 0.49, -0.90],  # H
        [1.90, -0.47, 0.90],  # H
        [1.88, -0.44, -0.88],  # H
        [2.95, 1.35, -0.05],  # H
    ]
)
NUMBERS = np.array([6, 6, 8, 1, 1, 1, 1, 1, 1])


def all_pairs(n):
    idx = torch.arange(n)
    i, j = torch.meshgrid(idx, idx, indexing="ij")
    mask = i != j
    return torch.stack([i[mask], j[mask]])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # The CPU is shared; one intra-op thread is much faster under load. Restored after.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    with torch.jit.optimized_execution(False):  # skip TorchScript profiling warm-up
        yield
    torch.set_num_threads(previous)


_MODELS = {}


def load(path):
    if path not in _MODELS:
        _MODELS[path] = load_model_file(path)
    return _MODELS[path]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    run = root / "run"
    ckpt = demo_checkpoint(
        run / "checkpoints" / "best.pt", ema=True, val_metrics={"energy_mae_meV": 1.5}
    )
    out = {
        "root": root,
        "run": run,
        "ckpt": ckpt,
        "f64": export_model(run, root / "m64.pt"),  # run directory → best.pt, EMA weights
        "f32": export_model(ckpt, root / "m32.pt", dtype="float32"),
    }
    return out


def _inputs(dtype, periodic=False):
    pos = torch.tensor(POSITIONS, dtype=dtype)
    z = torch.tensor(NUMBERS)
    if not periodic:
        ei = all_pairs(len(NUMBERS))
        return pos, z, ei, torch.zeros(ei.shape[1], 3, dtype=dtype)
    # A periodic 6 Å cubic cell: pairs to the 26 neighbouring images within r_max.
    cell = torch.eye(3, dtype=torch.float64) * 6.0
    senders, receivers, shifts = [], [], []
    for s in np.ndindex(3, 3, 3):
        shift = (torch.tensor(s, dtype=torch.float64) - 1.0) @ cell
        for i in range(len(NUMBERS)):
            for j in range(len(NUMBERS)):
                if i == j and not shift.abs().sum():
                    continue
                d = torch.tensor(POSITIONS[j] - POSITIONS[i]) + shift
                if d.norm() < 4.0:
                    senders.append(i)
                    receivers.append(j)
                    shifts.append(shift)
    ei = torch.tensor([senders, receivers])
    return pos, z, ei, torch.stack(shifts).to(dtype)


@pytest.mark.parametrize("periodic", [False, True])
@pytest.mark.parametrize("which,dtype,rtol", [("f64", torch.float64, 1e-10), ("f32", torch.float32, 1e-5)])
@pytest.mark.slow
def test_forward_matches_training_potential(files, which, dtype, rtol, periodic):
    state = load_checkpoint(files["ckpt"])
    potential = build_potential(state, use_ema=True, dtype=str(dtype).split(".")[-1])
    pos, z, ei, shifts = _inputs(dtype, periodic)
    n = len(z)
    ref = potential(pos, z, ei, shifts, torch.zeros(n, dtype=torch.long), 1, True, True)
    model, meta = load(files[which])
    out = model(pos, z, ei, shifts, n, True)
    assert set(out) == {"energy", "node_energy", "forces", "virial"}
    assert out["energy"].shape == () and out["virial"].shape == (3, 3)
    assert out["energy"].dtype == dtype
    scale_f = ref["forces"].abs().max()
    torch.testing.assert_close(out["energy"], ref["energy"][0], rtol=rtol, atol=0)
    torch.testing.assert_close(out["node_energy"], ref["node_energy"], rtol=rtol, atol=rtol * 1e3)
    torch.testing.assert_close(out["forces"], ref["forces"], rtol=0, atol=rtol * float(scale_f) * 10)
    torch.testing.assert_close(out["virial"], ref["virial"][0], rtol=0, atol=rtol * float(scale_f) * 100)
    # without virial the key is absent and forces are unchanged
    out2 = model(pos, z, ei, shifts, n, False)
    assert "virial" not in out2
    torch.testing.assert_close(out2["forces"], out["forces"])


def test_molecule_virial_is_sum_r_outer_f(files):
    model, _ = load(files["f64"])
    pos, z, ei, shifts = _inputs(torch.float64)
    out = model(pos, z, ei, shifts, len(z), True)
    expected = torch.einsum("ni,nj->ij", pos, out["forces"])
    torch.testing.assert_close(out["virial"], 0.5 * (expected + expected.T), rtol=0, atol=1e-10)


def test_float32_file_close_to_float64(files):
    m64, _ = load(files["f64"])
    m32, _ = load(files["f32"])
    pos, z, ei, shifts = _inputs(torch.float64)
    e64 = m64(pos, z, ei, shifts, len(z), False)["energy"]
    e32 = m32(pos, z, ei, shifts, len(z), False)["energy"]  # float64 positions cast inside
    assert e32.dtype == torch.float32
    assert abs(float(e32.detach()) - float(e64.detach())) <= 1e-5 * abs(float(e64))


def test_attributes_and_metadata(files):
    model, meta = load(files["f64"])
    state = load_checkpoint(files["ckpt"])
    spec = state["backbone_spec"]
    # attributes the LAMMPS pair style reads with module.attr(...)
    assert model.r_max == pytest.approx(spec["r_max"]) and isinstance(model.r_max, float)
    assert model.num_interactions == spec["num_interactions"]
    assert list(model.atomic_numbers) == [1, 6, 8]
    assert model.model_dtype == "float64"
    assert model.format_version == TORCHSCRIPT_FORMAT_VERSION == 1 and FORMAT_VERSION == 2
    assert load(files["f32"])[0].model_dtype == "float32"
    assert meta["format_version"] == 1 and meta["format"] == "torchscript"
    assert meta["backbone"] == "mace" == meta["backbone_spec"]["backbone"]
    assert meta["checksum"].startswith("sha256:")
    assert meta["species"] == [1, 6, 8] and meta["elements"] == ["H", "C", "O"]
    assert meta["r_max"] == spec["r_max"]
    assert meta["ghost_cutoff"] == pytest.approx(spec["num_interactions"] * spec["r_max"])
    assert meta["dtype"] == "float64"
    assert meta["units"] == {"energy": "eV", "length": "Angstrom", "forces": "eV/Angstrom"}
    assert meta["atomic_energies"] == {
        s: pytest.approx(e) for s, e in zip(["H", "C", "O"], spec["atomic_energies"])
    }
    for key in ("torch", "e3nn", "mace-torch", "python"):
        assert meta["versions"][key]
    assert meta["training_config"]["demo"] is True
    assert meta["validation_metrics"] == {"energy_mae_meV": 1.5}
    assert meta["source_checkpoint"].endswith("best.pt") and meta["used_ema"] is True
    assert meta["created"] and meta["empp_ff_version"]


def test_ema_weights_are_used(files):
    pos, z, ei, shifts = _inputs(torch.float64)
    e_ema = load(files["f64"])[0](pos, z, ei, shifts, len(z), False)["energy"]
    raw = build_potential(load_checkpoint(files["ckpt"]), use_ema=False, dtype="float64")
    e_raw = raw(pos, z, ei, shifts, torch.zeros(len(z), dtype=torch.long), 1, False)["energy"][0]
    assert abs(float(e_ema - e_raw)) > 1e-6


def test_n_local_counts_only_local_atoms(files):
    model, _ = load(files["f64"])
    pos, z, ei, shifts = _inputs(torch.float64)
    full = model(pos, z, ei, shifts, len(z), False)
    part = model(pos, z, ei, shifts, 4, False)
    torch.testing.assert_close(part["energy"], full["node_energy"][:4].sum())
    torch.testing.assert_close(part["node_energy"], full["node_energy"])
    # forces = -d(sum of local energies)/d(all positions): ghosts get forces too
    assert part["forces"][4:].abs().sum() > 0
    assert not torch.allclose(part["forces"], full["forces"])


def test_unknown_atomic_number_raises(files):
    model, _ = load(files["f64"])
    pos, z, ei, shifts = _inputs(torch.float64)
    z = z.clone()
    z[2] = 7  # nitrogen: not in the model
    with pytest.raises(Exception, match="not in the model's species"):
        model(pos, z, ei, shifts, len(z), False)


def test_malformed_call_raises(files):
    """The contract's shapes are checked in the file itself (the same check as the
    compiled package's runner, export/input_checks.py), naming the bad argument."""
    model, _ = load(files["f64"])
    pos, z, ei, shifts = _inputs(torch.float64)
    with pytest.raises(Exception, match=r"positions must be \[N, 3\]"):
        model(pos[:, :2], z, ei, shifts, len(z), False)
    with pytest.raises(Exception, match="different lengths"):
        model(pos, z[:-1], ei, shifts, len(z), False)
    with pytest.raises(Exception, match=r"edge_index must be \[2, E\]"):
        model(pos, z, ei.t(), shifts, len(z), False)
    with pytest.raises(Exception, match=r"shifts must be \[E, 3\]"):
        model(pos, z, ei, shifts[:-1], len(z), False)
    with pytest.raises(Exception, match="n_local"):
        model(pos, z, ei, shifts, len(z) + 1, False)


def test_bad_files(files, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_model_file(tmp_path / "missing.pt")
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(ModelFileError, match="not an empp-ff model file"):
        load_model_file(text)
    data = files["f64"].read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated"):
        load_model_file(truncated)
    with pytest.raises(ModelFileError, match="torch.save"):
        load_model_file(files["ckpt"])  # a training checkpoint, not an export
    with pytest.raises(ModelFileError, match="directory"):
        load_model_file(tmp_path)
    # a file from a newer, incompatible empp-ff
    newer = tmp_path / "newer.pt"
    with zipfile.ZipFile(files["f64"]) as src, zipfile.ZipFile(newer, "w") as dst:
        for info in src.infolist():
            payload = src.read(info)
            if info.filename.endswith("extra/metadata.json"):
                meta = json.loads(payload)
                meta["format_version"] = FORMAT_VERSION + 1
                payload = json.dumps(meta).encode()
            dst.writestr(info, payload)
    with pytest.raises(ModelFileError, match=f"format version {FORMAT_VERSION + 1}.*upgrade empp-ff"):
        load_model_file(newer)


def test_export_errors_and_atomic_write(files, tmp_path):
    with pytest.raises(FileNotFoundError):
        export_model(tmp_path / "nothing_here", tmp_path / "x.pt")
    with pytest.raises(ValueError, match="dtype"):
        export_model(files["ckpt"], tmp_path / "x.pt", dtype="float16")
    # a failed export leaves an existing file untouched and no temp files behind
    target = tmp_path / "keep.pt"
    target.write_bytes(b"previous")
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(ValueError):
        export_model(bad, target)
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt", "keep.pt"]
    assert not [p for p in files["root"].iterdir() if p.suffix == ".tmp"]


@pytest.mark.slow
def test_inference_path_imports_no_training_stack(files):
    """Loading a model file and running EMPPCalculator needs torch + ase only."""
    script = textwrap.dedent(
        f"""
        import sys
        from ase import Atoms
        from empp_ff import EMPPCalculator
        from empp_ff.export import load_model_file
        load_model_file({str(files['f64'])!r})
        atoms = Atoms("CH4", positions=[[0,0,0],[0.63,0.63,0.63],[-0.63,-0.63,0.63],
                                          [-0.63,0.63,-0.63],[0.63,-0.63,-0.63]])
        atoms.calc = EMPPCalculator({str(files['f64'])!r}, device="cpu")
        e = atoms.get_potential_energy(); f = atoms.get_forces()
        bad = [m for m in sys.modules if m.split(".")[0] in ("mace", "e3nn", "torch_geometric")
               or m.startswith("empp_ff.train") or m.startswith("empp_ff.model")]
        print("BAD", bad)
        assert not bad, bad
        """
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    assert "BAD []" in proc.stdout
