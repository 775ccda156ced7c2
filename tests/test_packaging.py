"""Packaging: wheels carry the LAMMPS pair-style sources (copied, no symlink) and the
entry point; the built plugin goes to the user cache, never into the package."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from empp_ff.inference.lammps.build import SOURCES as BUILD_SOURCES

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("README.md",) + BUILD_SOURCES  # every file the build hashes and compiles, and the docs


def test_no_symlinks_in_the_package():
    links = [str(p) for p in (ROOT / "empp_ff").rglob("*") if p.is_symlink()]
    assert not links, links


@pytest.mark.slow
def test_wheel_ships_pair_style_sources_and_entry_point(tmp_path):
    pytest.importorskip("setuptools")
    src = tmp_path / "src"  # build a copy: an in-tree build would write build/ into the checkout
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "*.so")
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "empp_ff", src / "empp_ff", ignore=ignore)
    shutil.copytree(ROOT / "calculators", src / "calculators", ignore=ignore)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"),
         str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("empp_ff-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        for name in SOURCES:
            packaged = zf.read(f"empp_ff/inference/lammps/csrc/{name}")
            assert packaged == (ROOT / "calculators" / "lammps" / name).read_bytes(), name
        entry_points = zf.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "empp = empp_ff.inference.lammps:get_plugin_dir" in entry_points
    # the demo data and the bundled EMPP-pre-trained weights (empp.pretrained)
    assert "empp_ff/data/demo/aspirin_demo.npz" in names
    assert "empp_ff/empp/pretrained/geom_drugs_demo.pt" in names
    assert "empp_ff/export/model_code_rules.txt" in names  # the code-scan rule of model files
    assert "empp_ff/empp/pretrained/geom_drugs_demo_torchmd_et.pt" in names
    assert not [n for n in names if n.endswith(".so")]


def test_plugin_lives_in_the_user_cache(tmp_path, monkeypatch):
    from empp_ff.inference.lammps import get_plugin_dir, paths

    monkeypatch.delenv(paths.ENV_PLUGIN_DIR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    target = paths.default_install_dir()
    assert target.parent == tmp_path / "cache" / "empp-ff" / "lammps-plugin"
    assert paths.candidate_dirs() == [target]
    assert get_plugin_dir() == str(target)  # nothing built there yet: still the install directory
    assert Path(paths.__file__).resolve().parent not in target.parents
    target.mkdir(parents=True)
    (target / paths.PLUGIN_NAME).write_bytes(b"")
    assert paths.plugin_path() == target / paths.PLUGIN_NAME

    monkeypatch.setenv(paths.ENV_PLUGIN_DIR, str(tmp_path / "mine"))
    assert paths.default_install_dir() == tmp_path / "mine"
    assert paths.candidate_dirs() == [tmp_path / "mine", target]
    assert get_plugin_dir() == str(target)  # the override has no plugin yet; the cache one is found
