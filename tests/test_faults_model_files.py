"""Hostile and broken model files (issue 28, items 1-3): model files are programs.

Each test builds the attack and checks that every reader refuses it with one line naming
the operation (or record, or limit) before any of the file's code runs, and that nothing
the attack would write exists afterwards. Genuine exports of both backbones in both
dtypes still load. The pair style's cases are in tests/test_lammps_model_files.py.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tracemalloc
import zipfile
from typing import List

import numpy as np
import pytest
import torch

from empp_ff import EMPPCalculator
from empp_ff.export import ModelFileError, load_model_file, read_metadata
from empp_ff.export.checksum import archive_checksum
from empp_ff.export.code_scan import derive, rules
from empp_ff.testing.models import make_model
from empp_ff.testing.packages import hostile_torchscript, rewrite_model_file

from conftest import ethanol

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.timeout(900)]

ET = {"backbone": "torchmd_et", "num_heads": 2, "num_rbf": 8}
BACKBONES = {"mace": None, "torchmd_et": ET}


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "empp_ff.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, OMP_NUM_THREADS="1"))


def _refusal(proc) -> str:
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    return lines[-1]


@pytest.fixture(scope="module")
def genuine(tmp_path_factory):
    root = tmp_path_factory.mktemp("genuine")
    return make_model(root / "m.pt")


# ------------------------------------------------------------------ modules a hostile file holds
class SaveInForward(torch.nn.Module):
    def __init__(self, target: str):
        super().__init__()
        self.target = target

    def forward(self, positions: torch.Tensor, atomic_numbers: torch.Tensor, edge_index: torch.Tensor,
                shifts: torch.Tensor, n_local: int, compute_virial: bool):
        torch.save(positions, self.target)
        return {"energy": positions.sum()}


class SaveInSetstate(SaveInForward):
    @torch.jit.export
    def __getstate__(self) -> List[str]:
        return [self.target]

    @torch.jit.export
    def __setstate__(self, state: List[str]) -> None:
        self.target = state[0]
        torch.save(torch.zeros(1), self.target)


class MapsAFile(SaveInForward):
    def forward(self, positions: torch.Tensor, atomic_numbers: torch.Tensor, edge_index: torch.Tensor,
                shifts: torch.Tensor, n_local: int, compute_virial: bool):
        data = torch.from_file(self.target, True, 8)
        return {"energy": positions.sum() + data.sum()}


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.slow
def test_genuine_exports_pass_the_code_scan(backbone, dtype, tmp_path):
    if backbone == "torchmd_et":
        pytest.importorskip("torchmdnet")
    path = make_model(tmp_path / "m.pt", dtype=dtype, architecture=BACKBONES[backbone])
    assert set(derive([path])) <= rules()["operations"]
    atoms = ethanol()
    atoms.calc = EMPPCalculator(path, device="cpu")
    assert np.isfinite(atoms.get_potential_energy())
    assert read_metadata(path)["backbone"] == backbone


def test_forward_torch_save_refused_by_calculator(genuine, tmp_path):
    target = tmp_path / "written_by_forward"
    path = hostile_torchscript(SaveInForward(str(target)), tmp_path / "hostile.pt", like=genuine)
    for load in (lambda: EMPPCalculator(path, device="cpu"), lambda: load_model_file(path)):
        with pytest.raises(ModelFileError, match=r"refused before loading: record code/.*calls torch\.save"):
            load()
    assert not target.exists()


@pytest.mark.slow
def test_setstate_torch_save_refused_by_info_and_md(genuine, tmp_path):
    target = tmp_path / "written_by_setstate"
    path = hostile_torchscript(SaveInSetstate(str(target)), tmp_path / "hostile.pt", like=genuine)
    with pytest.raises(ModelFileError, match=r"calls torch\.save"):
        EMPPCalculator(path, device="cpu")
    line = _refusal(_cli("info", path))
    assert "calls torch.save" in line and "hostile.pt" in line and "record code/" in line
    structure = tmp_path / "ethanol.xyz"
    ethanol().write(structure)
    line = _refusal(_cli("md", path, structure, "--steps", "2", "--out", tmp_path / "md.traj"))
    assert "calls torch.save" in line
    assert not target.exists() and not (tmp_path / "md.traj").exists()


def test_from_file_refused(genuine, tmp_path):
    target = tmp_path / "mapped"
    path = hostile_torchscript(MapsAFile(str(target)), tmp_path / "hostile.pt", like=genuine)
    with pytest.raises(ModelFileError, match=r"calls torch\.from_file"):
        EMPPCalculator(path, device="cpu")
    assert not target.exists()


def _edit_code(src, dst, old: bytes, new: bytes):
    """A copy of ``src`` with ``old`` replaced by ``new`` in its code records (checksum recomputed)."""
    edited = []

    def edit(name, data):
        if name.endswith(".py") and old in data:
            edited.append(name)
            return data.replace(old, new, 1)
        return data

    path = rewrite_model_file(src, dst, edit_record=edit)
    assert edited
    return path


@pytest.mark.parametrize("spelling, expected", [
    (b"ops.myns.min", "calls ops.myns.min"),                        # a custom-op namespace
    (b"ops.aten.zeros", "calls ops.aten.zeros"),                    # aten by its namespace
    (b"torch.tanh", "calls torch.tanh"),                            # an op no export emits
    (b"(torch).min", "uses `torch` other than"),                    # parentheses
    (b"getattr(torch, \"min\")", "uses `torch` other than"),        # getattr with a string
    (b"torch .  \\\n  classes.x.y", "calls torch.classes.x.y"),     # spacing, line continuation
    (b"__torch__.torch.classes.x.Y", "calls __torch__.torch.classes.x.Y"),  # C++ custom class
])
def test_operations_outside_the_allowlist_refused(genuine, tmp_path, spelling, expected):
    path = _edit_code(genuine, tmp_path / "edited.pt", b"ops.prim.min", spelling)
    with pytest.raises(ModelFileError, match="refused before loading") as info:
        read_metadata(path)
    assert expected in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("record", ["data.pkl", ".debug_pkl"])
def test_denied_names_in_pickles_refused(genuine, tmp_path, record):
    """Pickle records are searched as raw bytes: a reference to a C++ custom class there is refused."""
    def edit(name, data):
        return data + b"X\x0b\x00\x00\x00torch.classes" if name.endswith(record) else data

    path = rewrite_model_file(genuine, tmp_path / "edited.pt", edit_record=edit)
    with pytest.raises(ModelFileError, match=r"record .*pkl: it names `classes`"):
        read_metadata(path)


def test_non_ascii_code_refused(genuine, tmp_path):
    path = _edit_code(genuine, tmp_path / "edited.pt", b"ops.prim.min", "torch\u00a0.min".encode())
    with pytest.raises(ModelFileError, match="byte 0xc2 outside a string"):
        read_metadata(path)


def _with_records(src, dst, extra):
    """A copy of ``src`` with raw records ``extra`` ({name: bytes}) appended, names as given."""
    data = bytearray(open(src, "rb").read())
    buf = io.BytesIO(bytes(data))
    with zipfile.ZipFile(buf, "a") as zf:
        for name, body in extra.items():
            zf.writestr(name, body)
    dst.write_bytes(buf.getvalue())
    return dst


@pytest.mark.parametrize("name, problem", [("../../../../escaped.txt", "a '..' component"),
                                           ("/tmp/escaped_abs.txt", "an absolute path")])
def test_zip_slip_records_refused(compiled_model64, tmp_path, name, problem):
    root = zipfile.ZipFile(compiled_model64["pt2"]).namelist()[0].split("/", 1)[0]
    record = name if name.startswith("/") else f"{root}/data/aotinductor/model/{name}"
    path = _with_records(compiled_model64["pt2"], tmp_path / "slip.pt2", {record: b"x"})
    with pytest.raises(ModelFileError, match=f"record .*has {problem}"):
        EMPPCalculator(path, device="cpu")
    assert problem in _refusal(_cli("info", path))
    assert not (tmp_path / "escaped.txt").exists()


def test_duplicate_records_refused(genuine, tmp_path):
    root = zipfile.ZipFile(genuine).namelist()[0].split("/", 1)[0]
    with pytest.warns(UserWarning, match="Duplicate name"):
        path = _with_records(genuine, tmp_path / "dup.pt", {f"{root}/code/__torch__/empp_ff/model/scatter.py": b""})
    with pytest.raises(ModelFileError, match="occurs twice"):
        read_metadata(path)


def test_failed_package_load_leaves_no_folder(compiled_model64, tmp_path, monkeypatch):
    """A package whose library cannot be loaded: the extraction folder goes with the error."""
    def edit(name, data):
        return b"not a shared library" if name.endswith(".so") else data

    path = rewrite_model_file(compiled_model64["pt2"], tmp_path / "broken.pt2", edit_record=edit)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    with pytest.raises(ModelFileError, match="cannot load the compiled model package"):
        EMPPCalculator(path, device="cpu")
    assert list(scratch.iterdir()) == []


def _bomb(path, size: int):
    """A 'model file' with a metadata record and one deflated record of ``size`` zero bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("m/version", b"3\n")  # what torch's reader needs to open an archive
        zf.writestr("m/extra/metadata.json", json.dumps({"kind": "empp-ff-model", "format_version": 1,
                                                          "checksum": "sha256:" + "0" * 64}))
        with zf.open("m/data/0", "w", force_zip64=True) as fh:
            chunk = bytes(1 << 20)
            for _ in range(size >> 20):
                fh.write(chunk)
    return path


@pytest.mark.slow
def test_deflate_bomb_refused_unread(tmp_path):
    path = _bomb(tmp_path / "bomb.pt", 512 << 20)
    assert path.stat().st_size < 2 << 20
    proc = _cli("info", path, timeout=60)
    assert "zip bomb" in _refusal(proc) and "512 MiB" in proc.stderr


def test_checksum_streams_large_records(tmp_path):
    """A 48 MiB record is hashed in chunks: the reader never holds it whole."""
    path = tmp_path / "big.zip"
    with zipfile.ZipFile(path, "w") as zf:
        with zf.open("m/data/0", "w") as fh:
            for _ in range(48):
                fh.write(os.urandom(1 << 20))
    tracemalloc.start()
    archive_checksum(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 << 20, peak


def test_huge_metadata_refused(genuine, tmp_path):
    path = rewrite_model_file(genuine, tmp_path / "fat.pt", edit_metadata=lambda m: m.update(pad="x" * (5 << 20)))
    with pytest.raises(ModelFileError, match="metadata.json is 5.0 MiB, more than the 4 MiB"):
        read_metadata(path)


# ------------------------------------------------------------------ cells that would exhaust memory
@pytest.mark.parametrize("cell, pbc, expected", [
    ([10.0, 10.0, 1e-7], True, "too thin for the cutoff: 1e-07"),
    ([10.0, 10.0, 1e-5], True, "too thin for the cutoff: 1e-05"),
    ([[5, 0, 0], [5, 1e-12, 0], [0, 0, 5]], True, "too thin for the cutoff"),
    ([1e-7, 10.0, 10.0], [True, False, False], "too thin for the cutoff"),
    ([2.0, 2.0, 2.0], True, "too dense for a neighbour list"),  # 900 atoms in 8 A^3 (below)
])
def test_vanishing_or_dense_cells_refused(genuine, cell, pbc, expected):
    from empp_ff.neighbours import neighbour_graph

    atoms = ethanol()
    atoms.cell, atoms.pbc = cell, pbc
    if "dense" in expected:  # squeeze ethanol's atoms into the cell, 100 copies of it
        atoms = atoms.repeat((5, 5, 4))
        atoms.cell, atoms.pbc = cell, pbc
        atoms.positions *= 1e-3
    with pytest.raises(ValueError, match=expected) as info:
        neighbour_graph(atoms.positions, 5.0, atoms.cell.array, atoms.pbc)
    assert "\n" not in str(info.value)
    atoms.calc = EMPPCalculator(genuine, device="cpu")
    with pytest.raises(ValueError, match=f"{expected}|is singular") as info:  # (its own check of a 0-volume cell)
        atoms.get_potential_energy()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("pbc", [False, True])
def test_piled_up_atoms_refused(genuine, pbc):
    """20000 atoms within 1e-3 Å in a roomy box (average density fine): 4e8 pairs, refused
    from a grid count before vesin would build them (16 GB)."""
    from ase import Atoms

    from empp_ff.neighbours import neighbour_graph

    rng = np.random.default_rng(0)
    atoms = Atoms(numbers=np.full(20000, 6), positions=5.0 + 1e-3 * rng.random((20000, 3)), cell=[100.0] * 3,
                  pbc=pbc)
    with pytest.raises(ValueError, match=r"the atoms are piled up: at least 4e\+08 pairs"):
        neighbour_graph(atoms.positions, 5.0, atoms.cell.array, atoms.pbc)
    atoms.calc = EMPPCalculator(genuine, device="cpu", min_distance=None)
    with pytest.raises(ValueError, match="the atoms are piled up") as info:
        atoms.get_potential_energy()
    assert "\n" not in str(info.value)


def test_small_sane_cells_still_work(genuine):
    from ase.build import bulk

    atoms = bulk("C", "diamond", a=3.57)  # 2 atoms in a 11 A^3 cell, r_max 3.5 A: 15 images a side
    atoms.calc = EMPPCalculator(genuine, device="cpu")
    assert np.isfinite(atoms.get_potential_energy())


# ------------------------------------------------------------------ the trusted-model list
def _sha256sum(path) -> str:
    import hashlib

    return f"{hashlib.sha256(open(path, 'rb').read()).hexdigest()}  {os.path.basename(path)}\n"


@pytest.mark.slow
def test_trusted_list_admits_listed_files_only(genuine, tmp_path, monkeypatch):
    other = make_model(tmp_path / "other.pt", seed=1)
    listing = tmp_path / "trusted.sha256"
    listing.write_text("# models the lab vetted\n" + _sha256sum(genuine))
    monkeypatch.setenv("EMPP_FF_TRUSTED_MODELS", str(listing))
    atoms = ethanol()
    atoms.calc = EMPPCalculator(genuine, device="cpu")
    assert np.isfinite(atoms.get_potential_energy())
    with pytest.raises(ModelFileError, match="other.pt is not in the trusted-model list .*its sha256 is [0-9a-f]{64}"):
        EMPPCalculator(other, device="cpu")
    line = _refusal(_cli("info", other))
    assert "not in the trusted-model list" in line
    monkeypatch.setenv("EMPP_FF_TRUSTED_MODELS", str(tmp_path / "missing.sha256"))
    with pytest.raises(ModelFileError, match="cannot read the trusted-model list"):
        read_metadata(genuine)
    listing.write_text("not a digest  model.pt\n")
    monkeypatch.setenv("EMPP_FF_TRUSTED_MODELS", str(listing))
    with pytest.raises(ModelFileError, match="trusted.sha256:1: not a `sha256sum` line"):
        read_metadata(genuine)


@pytest.mark.slow
def test_export_under_a_trusted_list_notes_the_new_file(tmp_path, monkeypatch):
    """`empp-ff export` writes its file and says it is not on the list yet (readers refuse it)."""
    checkpoint = make_model(tmp_path / "ckpt.pt", checkpoint=True)
    listing = tmp_path / "trusted.sha256"
    listing.write_text("")
    monkeypatch.setenv("EMPP_FF_TRUSTED_MODELS", str(listing))
    proc = _cli("export", checkpoint, "-o", tmp_path / "new.pt")
    assert proc.returncode == 0, proc.stderr
    assert "note: " in proc.stderr and "new.pt is not in the trusted-model list" in proc.stderr
    assert "not in the trusted-model list" in _refusal(_cli("info", tmp_path / "new.pt"))
    listing.write_text(_sha256sum(tmp_path / "new.pt"))
    assert _cli("info", tmp_path / "new.pt").returncode == 0


def test_a_file_without_metadata_is_named_for_what_it_looks_like(tmp_path):
    """A training checkpoint (torch.save) is told to export first; a TorchScript file of another
    program is called that, not a checkpoint."""
    checkpoint, other = tmp_path / "last.pt", tmp_path / "other.pt"
    torch.save({"potential_state": {"w": torch.zeros(2)}}, checkpoint)
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(other))
    with pytest.raises(ModelFileError, match="plain torch.save file .*empp-ff export"):
        read_metadata(checkpoint)
    with pytest.raises(ModelFileError, match="no metadata.json \\(a TorchScript file or package"):
        read_metadata(other)
