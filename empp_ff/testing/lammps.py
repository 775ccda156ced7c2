"""Reference evaluations for the LAMMPS pair style's tests and benchmarks.

``reference`` evaluates a model file through the ASE calculator, which is what
LAMMPS must reproduce; ``lammps_single_point`` runs ``lmp`` on the same structure;
``nve_thermo`` runs an NVE trajectory (the one input the NVE tests share) and returns its
thermo rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np


def reference(model_path, atoms, *, compute_virial: bool = True) -> Dict[str, np.ndarray]:
    """Energy (eV), forces (eV/A), per-atom energies and stress (eV/A^3, ASE sign) of
    ``atoms`` from the ASE calculator: what LAMMPS must reproduce."""
    from empp_ff.inference.calculator import EMPPCalculator

    a = atoms.copy()
    a.calc = EMPPCalculator(str(model_path), device="cpu")
    res = {
        "energy": float(a.get_potential_energy()),
        "forces": np.asarray(a.get_forces()),
        "node_energy": np.asarray(a.get_potential_energies()),
    }
    if compute_virial and a.pbc.all():
        from ase.stress import voigt_6_to_full_3x3_stress

        res["stress"] = voigt_6_to_full_3x3_stress(a.get_stress())
    return res


NKTV2P_METAL = 1.6021765e6  # LAMMPS metal units: eV/A^3 -> bar (force.cpp)


def lammps_single_point(
    model_path,
    atoms,
    *,
    np_ranks: int = 1,
    elements: Optional[Sequence[str]] = None,
    pair_args: str = "",
    units: str = "metal",
    workdir=None,
    timeout: float = 300,
) -> Dict[str, np.ndarray]:
    """Energy, forces (by atom, in input order) and pressure tensor from ``lmp`` (run 0).

    Runs ``lmp`` (or ``mpirun -np N lmp``) in a subprocess. Returns energy and forces
    in the LAMMPS units, ``pressure`` [3, 3] in LAMMPS pressure units, and ``log``.
    """
    import subprocess
    import tempfile

    from empp_ff.inference.lammps.inputs import write_data
    from empp_ff.inference.lammps.runner import lammps_command, lammps_env

    tmp = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="empp_lmp_"))
    tmp.mkdir(parents=True, exist_ok=True)
    elements = write_data(atoms, tmp / "system.data", elements)
    inp = f"""
units {units}
atom_style atomic
boundary p p p
newton on
read_data system.data
pair_style empp {pair_args}
pair_coeff * * {Path(model_path).resolve()} {' '.join(elements)}
neighbor 1.0 bin
compute pea all pe/atom
thermo_style custom step pe pxx pyy pzz pxy pxz pyz
thermo_modify format float %.17g
run 0
print "EMPP_PE $(pe:%.17g)"
print "EMPP_P $(pxx:%.17g) $(pyy:%.17g) $(pzz:%.17g) $(pxy:%.17g) $(pxz:%.17g) $(pyz:%.17g)"
write_dump all custom forces.dump id fx fy fz c_pea modify sort id format float %.17g
"""
    (tmp / "in.sp").write_text(inp)
    cmd = lammps_command(np_ranks) + ["-in", "in.sp", "-log", "log.lammps", "-nocite"]
    proc = subprocess.run(
        cmd, cwd=tmp, env=lammps_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout
    )
    log = proc.stdout
    if proc.returncode != 0 or "EMPP_PE" not in log:
        raise RuntimeError(f"LAMMPS failed (rc={proc.returncode}):\n{log[-3000:]}")
    pe = float(log.split("EMPP_PE ")[1].split()[0])
    p = [float(v) for v in log.split("EMPP_P ")[1].split("\n")[0].split()]
    pressure = np.array([[p[0], p[3], p[4]], [p[3], p[1], p[5]], [p[4], p[5], p[2]]])
    lines = (tmp / "forces.dump").read_text().splitlines()
    start = lines.index(next(line for line in lines if line.startswith("ITEM: ATOMS"))) + 1
    data = np.array([[float(v) for v in line.split()] for line in lines[start:]])
    order = np.argsort(data[:, 0])
    data = data[order]
    return {"energy": pe, "forces": data[:, 1:4], "node_energy": data[:, 4], "pressure": pressure, "log": log}


def assert_matches_reference(res, ref, rtol: float) -> None:
    """LAMMPS single point ``res`` == ASE ``ref`` (``reference``) to ``rtol``: energy,
    per-atom energies (relative to the interaction part), forces, pressure tensor."""
    fscale = np.abs(ref["forces"]).max()
    assert abs(res["energy"] - ref["energy"]) <= rtol * abs(ref["energy"])
    # the interaction part of the energy, which is what MD feels
    e_inter = np.abs(ref["node_energy"] - np.round(ref["node_energy"])).sum() + 1.0
    assert np.abs(res["node_energy"] - ref["node_energy"]).max() <= rtol * e_inter * 10
    assert np.abs(res["forces"] - ref["forces"]).max() <= rtol * fscale
    if "stress" in ref:
        p_ref = -ref["stress"] * NKTV2P_METAL  # bar; zero velocities: virial only
        assert np.abs(res["pressure"] - p_ref).max() <= rtol * np.abs(p_ref).max()


def run_lammps_input(workdir, text: str, np_ranks: int = 1, timeout: Optional[float] = 180,
                     env: Optional[Dict[str, str]] = None):
    """Run the LAMMPS input ``text`` (dedented) in ``workdir``; the finished process
    (stdout and stderr together in ``.stdout``). ``env``: variables set on top of
    LAMMPS's environment (e.g. ``OMP_NUM_THREADS``); ``timeout=None``: no limit."""
    import subprocess
    import textwrap

    from empp_ff.inference.lammps.runner import lammps_command, lammps_env

    (Path(workdir) / "in.test").write_text(textwrap.dedent(text))
    return subprocess.run(
        lammps_command(np_ranks) + ["-in", "in.test", "-log", "none", "-nocite"],
        cwd=workdir, env={**lammps_env(), **(env or {})}, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, timeout=timeout,
    )


def nve_thermo(model_path, atoms, workdir, *, dt_fs: float, steps: int, every: int,
               columns=("pe", "ke", "etotal"), pair_args: str = "", np_ranks: int = 1,
               velocity_options: str = "", digits: int = 12, boundary: str = "p p p") -> tuple:
    """LAMMPS NVE of ``atoms`` from 300 K velocities: ``steps`` steps of ``dt_fs`` fs with
    a thermo row every ``every`` steps. Returns ``(rows, log)``: the rows as an array, one
    column for the step and one per entry of ``columns`` (LAMMPS thermo keywords), and
    LAMMPS's output. ``velocity_options`` extends the ``velocity create`` line (``loop
    geom`` makes the velocities independent of the number of ranks); ``boundary`` is the
    LAMMPS boundary command's argument (``"s s s"``: a molecule in vacuum)."""
    import re

    from empp_ff.inference.lammps.inputs import write_data

    workdir = Path(workdir)
    elements = write_data(atoms, workdir / "nve.data")
    proc = run_lammps_input(workdir, f"""
        units metal
        atom_style atomic
        boundary {boundary}
        read_data nve.data
        pair_style empp {pair_args}
        pair_coeff * * {model_path} {' '.join(elements)}
        neighbor 1.0 bin
        neigh_modify every 1 delay 0 check yes
        velocity all create 300 4928 mom yes rot yes dist gaussian {velocity_options}
        timestep {dt_fs / 1000}
        fix 1 all nve
        thermo_style custom step {' '.join(columns)}
        thermo_modify format float %.{digits}g
        thermo {every}
        run {steps}
    """, np_ranks=np_ranks)
    if proc.returncode != 0:
        raise RuntimeError(f"LAMMPS NVE failed (rc={proc.returncode}):\n{proc.stdout[-3000:]}")
    num = r"(-?\d+\.?\d*(?:[eE][-+]?\d+)?)"
    rows = re.findall(r"^\s*(\d+)" + rf"\s+{num}" * len(columns) + r"\s*$", proc.stdout, flags=re.M)
    data = np.array([[float(v) for v in r] for r in rows])
    expected = steps // every + 1
    if len(data) != expected:
        raise RuntimeError(f"expected {expected} thermo rows, got {len(data)}:\n{proc.stdout[-3000:]}")
    return data, proc.stdout


def nve_energy_ranges(model_path, atoms, workdir, runs=((0.25, 20), (0.125, 40)), pair_args: str = "",
                      np_ranks: int = 1) -> Dict[float, tuple]:
    """LAMMPS NVE of ``atoms`` at 300 K for each (dt in fs, steps) of ``runs``; per dt the
    peak-to-peak of the potential and of the total energy over 11 thermo rows (eV):
    {dt: (ptp(pe), ptp(etot))}. The runs' lengths in time are the caller's choice (equal
    lengths make the total-energy error comparable across dt)."""
    ranges = {}
    for dt_fs, steps in runs:
        data, _ = nve_thermo(model_path, atoms, workdir, dt_fs=dt_fs, steps=steps, every=steps // 10,
                             pair_args=pair_args, np_ranks=np_ranks)
        ranges[dt_fs] = (float(np.ptp(data[:, 1])), float(np.ptp(data[:, 3])))
    return ranges
