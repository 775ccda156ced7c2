"""Timing ``pair_style empp`` in LAMMPS (``benchmarks/lammps_speed.py`` and
``benchmarks/mace_path_ab.py``).

Every run is NVE from 300 K velocities (0.5 fs), one torch thread per MPI rank
(``OMP_NUM_THREADS=1``, ``pair_style empp threads 1``), on a data file whose atom types
are H, C, O (``md_examples/lammps/make_data.py``'s order): ``warmup`` untimed steps, then
``steps`` timed by LAMMPS's own loop time.

:func:`lammps_ms` is the speed table's run (guard off: random weights pull atoms together
within tens of steps). The scaling runs (:func:`run_scaling_case`) compare the full-shell
mode (``halo no``, ghost shell num_interactions * r_max + skin) with halo mode (``halo
yes``, ghost shell r_max + skin, node features exchanged between layers); per run ms per
MD step, LAMMPS's own communication time (positions/forces, "Comm" row), the pair style's
halo exchange time (its timing line), ghosts per rank, and the final potential and total
energy, which must agree across modes and rank counts. Their velocities use ``loop
geom``, so they do not depend on the number of ranks.
"""

from __future__ import annotations

import re
import tempfile
from typing import Dict, List, Optional, Tuple

MD_INPUT = """
units metal
atom_style atomic
boundary p p p
newton on
read_data {data}
pair_style empp threads 1 {pair_args}
pair_coeff * * {model} H C O
neighbor 1.0 bin
neigh_modify every 1 delay 0 check yes
timestep 0.0005
velocity all create 300 4928 mom yes rot yes dist gaussian{velocity}
fix 1 all nve
{thermo}
thermo 1000
run {warmup}
run {steps}
"""

#: The scaling runs' pair-style modes.
SCALING_MODES = {"full shell": "halo no", "halo": "halo yes"}


def run_md(model, data, np_ranks: int, steps: int, warmup: int, pair_args: str = "", velocity: str = "",
           thermo: str = "") -> str:
    """LAMMPS's output of one timing run (raises with its tail when LAMMPS fails)."""
    from empp_ff.testing.lammps import run_lammps_input

    text = MD_INPUT.format(data=data, model=model, pair_args=pair_args, velocity=velocity, thermo=thermo,
                           warmup=warmup, steps=steps)
    with tempfile.TemporaryDirectory() as tmp:
        proc = run_lammps_input(tmp, text, np_ranks, timeout=None, env={"OMP_NUM_THREADS": "1"})
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout[-3000:])
    return proc.stdout


def lammps_ms(model, data, np_ranks: int, steps: int, warmup: int = 2,
              extra: str = "") -> Tuple[float, Optional[float]]:
    """(ms per MD step, ghost atoms per rank) of ``steps`` steps, the instability guard off
    (``min_distance 0``); ``extra``: more ``pair_style empp`` arguments."""
    out = run_md(model, data, np_ranks, steps, warmup, pair_args=f"min_distance 0 {extra}")
    seconds, _, n = re.findall(r"Loop time of (\S+) on (\d+) procs for (\d+) steps", out)[-1]
    ghosts = re.findall(r"Nghost:\s+(\S+) ave", out)
    return 1e3 * float(seconds) / int(n), float(ghosts[-1]) if ghosts else None


def parse_scaling_output(out: str) -> dict:
    """The figures of one scaling run from LAMMPS's output (see the module docstring)."""
    loop = re.findall(r"Loop time of (\S+) on (\d+) procs for (\d+) steps", out)[-1]
    comm = re.findall(r"^Comm\s+\|\s*(\S+)\s*\|\s*(\S+)\s*\|\s*(\S+)", out, flags=re.M)[-1]
    timing = re.findall(r"pair_style empp timing \((\w+) mode.*?(\d+) call\(s\)\), ms per call: graph (\S+), "
                        r"model (\S+) \(forward (\S+), backward (\S+)\), halo comm (\S+) \(slowest rank (\S+)\)",
                        out)[-1]
    ghosts = re.findall(r"Nghost:\s+(\S+) ave", out)[-1]
    num = r"(-?\d+\.?\d*(?:[eE][-+]?\d+)?)"
    thermo = re.findall(rf"^\s*(\d+)\s+{num}\s+{num}\s*$", out, flags=re.M)[-1]
    steps = int(loop[2])
    return {
        "ms_per_step": 1e3 * float(loop[0]) / steps,
        "lammps_comm_ms_per_step": 1e3 * float(comm[1]) / steps,  # average over ranks
        "pair_mode": timing[0],
        "pair_ms_per_call": {"graph": float(timing[2]), "model": float(timing[3]), "forward": float(timing[4]),
                             "backward": float(timing[5]), "halo_comm": float(timing[6]),
                             "halo_comm_slowest_rank": float(timing[7])},
        "ghosts_per_rank": float(ghosts),
        "final_step": int(thermo[0]),
        "final_pe": float(thermo[1]),
        "final_etotal": float(thermo[2]),
    }


def run_scaling_case(model, data, mode: str, np_ranks: int, steps: int, warmup: int) -> dict:
    """One scaling run of ``mode`` (a key of :data:`SCALING_MODES`) on ``np_ranks`` ranks.
    ``min_distance 0.2``: the random packings of ``liquid_box`` have a few contacts of
    0.29-0.43 Å."""
    out = run_md(model, data, np_ranks, steps, warmup, pair_args=f"min_distance 0.2 {SCALING_MODES[mode]}",
                 velocity=" loop geom", thermo="thermo_style custom step pe etotal\nthermo_modify format float %.15g")
    return parse_scaling_output(out)


def summarise_scaling(rows: Dict[str, dict]) -> dict:
    """Speed-ups, parallel efficiencies and energy agreement of one box's runs (keys
    '<mode> np<N>')."""
    base = rows["halo np1"]
    out = {}
    for mode in SCALING_MODES:
        one, two = rows[f"{mode} np1"], rows[f"{mode} np2"]
        out[f"{mode} speedup_np2"] = one["ms_per_step"] / two["ms_per_step"]
        out[f"{mode} efficiency_np2"] = out[f"{mode} speedup_np2"] / 2
    out["halo np2 vs full shell np1"] = rows["full shell np1"]["ms_per_step"] / rows["halo np2"]["ms_per_step"]
    out["max_rel_diff_final_pe"] = max(abs(r["final_pe"] - base["final_pe"]) / abs(base["final_pe"])
                                       for r in rows.values())
    out["max_rel_diff_final_etotal"] = max(abs(r["final_etotal"] - base["final_etotal"]) / abs(base["final_etotal"])
                                           for r in rows.values())
    return out


def scaling_markdown(results: dict) -> List[str]:
    """The scaling table and one line per box of ``results["boxes"]``."""
    lines = [
        "| atoms | box (A) | mode | ranks | ms/step | steps/s | speed-up vs 1 rank | parallel efficiency | "
        "halo comm ms/step (slowest rank) | LAMMPS comm ms/step | ghosts/rank |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for box in results["boxes"].values():
        for mode in SCALING_MODES:
            for npr in (1, 2):
                r = box["runs"][f"{mode} np{npr}"]
                s = box["summary"][f"{mode} speedup_np2"] if npr == 2 else 1.0
                pair = r["pair_ms_per_call"]
                halo_comm = f"{pair['halo_comm']:.1f} ({pair['halo_comm_slowest_rank']:.1f})" if mode == "halo" else "-"
                lines.append(
                    f"| {box['atoms']} | {box['box_A']:.1f} | {mode} | {npr} | {r['ms_per_step']:.0f} | "
                    f"{1e3 / r['ms_per_step']:.3f} | {s:.2f}x | {100 * s / npr:.0f}% | {halo_comm} | "
                    f"{r['lammps_comm_ms_per_step']:.1f} | {r['ghosts_per_rank']:.0f} |"
                )
    lines.append("")
    for box in results["boxes"].values():
        sm = box["summary"]
        lines.append(
            f"* {box['atoms']} atoms: halo on 2 ranks is {sm['halo np2 vs full shell np1']:.2f}x the full-shell "
            f"single rank; final energies of all four runs agree to {sm['max_rel_diff_final_pe']:.1e} (potential) "
            f"and {sm['max_rel_diff_final_etotal']:.1e} (total), relative (thermo printed to 15 digits); "
            f"load average before/after "
            f"{box['loadavg_before']} / {box['loadavg_after']}."
        )
    return lines
