"""pair_style empp and hostile or re-serialised model files (issue 28, items 1-3): the
plugin applies the Python readers' rules (tests/test_faults_model_files.py) in C++.

* metadata.json is parsed as JSON: compact or key-reordered metadata still has its checksum
  verified (one edited weight byte is refused, as `empp-ff info` refuses it);
* a TorchScript file whose code calls an operation no export emits is refused before
  torch::jit::load, with the operation and record named, and writes nothing;
* record names leaving the folder, zip bombs and files missing from EMPP_FF_TRUSTED_MODELS
  are refused.
"""

from __future__ import annotations

import hashlib
import json
import zipfile

import pytest
import torch
from test_faults_model_files import SaveInForward, SaveInSetstate, _bomb, _cli, _edit_code, _refusal, _with_records

from empp_ff.testing.packages import hostile_torchscript, rewrite_model_file

from conftest import LAMMPS_TEST_MARKS, ethanol

pytestmark = LAMMPS_TEST_MARKS


def _run(model, tmp_path):
    from empp_ff.testing.lammps import lammps_single_point

    atoms = ethanol()
    atoms.cell = [12.0, 12.0, 12.0]
    atoms.pbc = True
    return lammps_single_point(model, atoms, workdir=tmp_path / "lmp")


def _error(model, tmp_path) -> str:
    with pytest.raises(RuntimeError) as info:
        _run(model, tmp_path)
    return next(line for line in str(info.value).splitlines() if "ERROR" in line)


def _flip_weight_byte(name, data):
    if name == "data/2":  # a weight record of the float64 test model
        return data[:8] + bytes([data[8] ^ 0x01]) + data[9:]
    return data


COMPACT = {"separators": (",", ":")}


@pytest.mark.parametrize("layout", ["compact", "reordered"])
def test_reserialised_metadata_keeps_the_checksum(plugin, model64, tmp_path, layout):
    """The checksum is found by parsing the JSON: a compact or reordered metadata.json with one
    edited weight byte is refused (like `empp-ff info`), without the edit it runs unchanged."""
    def dump(meta):
        if layout == "compact":
            return json.dumps(meta, **COMPACT)
        return json.dumps(dict(reversed(list(meta.items()))))  # checksum before the nested blocks

    intact = rewrite_model_file(model64, tmp_path / f"{layout}.pt", dump_metadata=dump)
    edited = rewrite_model_file(model64, tmp_path / f"{layout}_edited.pt", dump_metadata=dump,
                                edit_record=_flip_weight_byte, recompute_checksum=False)
    assert "failed its integrity check" in _refusal(_cli("info", edited))
    error = _error(edited, tmp_path)
    assert "failed its integrity check" in error and edited.name in error, error
    assert _run(intact, tmp_path)["energy"] == _run(model64, tmp_path)["energy"]


@pytest.mark.parametrize("module", [SaveInForward, SaveInSetstate])
def test_pair_style_refuses_torch_save(plugin, model64, tmp_path, module):
    target = tmp_path / "written"
    path = hostile_torchscript(module(str(target)), tmp_path / "hostile.pt", like=model64)
    error = _error(path, tmp_path)
    assert "refused before loading: record code/" in error and "calls torch.save" in error, error
    assert not target.exists()


@pytest.mark.parametrize("spelling, expected", [
    (b"ops.myns.min", "calls ops.myns.min"),
    (b"(torch).min", "uses `torch` other than"),
    (b"getattr(torch, \"min\")", "uses `torch` other than"),
    (b"torch .  \\\n  classes.x.y", "calls torch.classes.x.y"),
    ("torch\u00a0.min".encode(), "byte 0xc2 outside a string"),
])
def test_pair_style_scan_matches_python(plugin, model64, tmp_path, spelling, expected):
    path = _edit_code(model64, tmp_path / "edited.pt", b"ops.prim.min", spelling)
    python = _refusal(_cli("info", path))
    error = _error(path, tmp_path)
    assert expected in error and expected in python, (error, python)


def test_pair_style_refuses_escaping_records_and_bombs(plugin, model64, tmp_path):
    root = zipfile.ZipFile(model64).namelist()[0].split("/", 1)[0]
    slip = _with_records(model64, tmp_path / "slip.pt", {f"{root}/extra/../../escaped": b"x"})
    assert "has a '..' component" in _error(slip, tmp_path)
    bomb = _bomb(tmp_path / "bomb.pt", 256 << 20)
    assert "zip bomb" in _error(bomb, tmp_path)


def test_pair_style_trusted_list(plugin, model64, tmp_path, monkeypatch):
    digest = hashlib.sha256(model64.read_bytes()).hexdigest()
    listing = tmp_path / "trusted.sha256"
    listing.write_text(f"{digest}  {model64.name}\n")
    monkeypatch.setenv("EMPP_FF_TRUSTED_MODELS", str(listing))
    assert torch.isfinite(torch.tensor(_run(model64, tmp_path)["energy"]))
    other = rewrite_model_file(model64, tmp_path / "other.pt", edit_metadata=lambda m: m.update(note="x"))
    error = _error(other, tmp_path)
    assert "is not in the trusted-model list" in error and "other.pt" in error, error


def test_pair_style_package_folder_removed(plugin, compiled_model64, tmp_path, monkeypatch):
    """A .pt2 is extracted into a private folder under TMPDIR: gone after a run, and after a
    package whose library cannot be loaded (it used to leave /tmp/aotinductor_*)."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    assert torch.isfinite(torch.tensor(_run(compiled_model64["pt2"], tmp_path)["energy"]))
    assert list(scratch.iterdir()) == []
    broken = rewrite_model_file(compiled_model64["pt2"], tmp_path / "broken.pt2",
                                edit_record=lambda name, data: b"not a library" if name.endswith(".so") else data)
    assert "cannot load the compiled model package" in _error(broken, tmp_path)
    assert list(scratch.iterdir()) == []
