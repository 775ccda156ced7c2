"""MPI scaling of pair_style empp: `python benchmarks/lammps_speed.py --scaling`.

Periodic water/methanol boxes (md_examples/lammps/make_data.py's liquid_box) of
about 2.6k, 10k and 29k atoms, 1 and 2 MPI ranks, the full-shell mode (`halo no`,
ghost shell num_interactions * r_max + skin) and halo mode (`halo yes`, ghost
shell r_max + skin, node features exchanged between layers). Per run: ms per MD
step, LAMMPS' own communication time (positions/forces, "Comm" row), the pair
style's halo exchange time (its timing line), ghosts per rank, and the final
potential and total energy, which must agree across modes and rank counts.
Velocities use `loop geom`, so they do not depend on the number of ranks.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

SCALING_INPUT = """
units metal
atom_style atomic
boundary p p p
newton on
read_data {data}
# min_distance 0.2: the random packings of liquid_box have a few contacts of 0.29-0.43 A
pair_style empp threads 1 min_distance 0.2 {mode}
pair_coeff * * {model} H C O
neighbor 1.0 bin
neigh_modify every 1 delay 0 check yes
timestep 0.0005
velocity all create 300 4928 mom yes rot yes dist gaussian loop geom
fix 1 all nve
thermo_style custom step pe etotal
thermo_modify format float %.15g
thermo 1000
run {warmup}
run {steps}
"""

MODES = {"full shell": "halo no", "halo": "halo yes"}


def _parse(out: str) -> dict:
    loop = re.findall(r"Loop time of (\S+) on (\d+) procs for (\d+) steps", out)[-1]
    comm = re.findall(r"^Comm\s+\|\s*(\S+)\s*\|\s*(\S+)\s*\|\s*(\S+)", out, flags=re.M)[-1]
    timing = re.findall(r"pair_style empp timing \((\w+) mode.*?(\d+) call\(s\)\), ms per call: graph (\S+), "
                        r"model (\S+) \(forward (\S+), backward (\S+)\), halo comm (\S+) \(slowest rank (\S+)\)", out)[-1]
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


def run_case(model, data, mode, np_ranks, steps, warmup) -> dict:
    from empp_ff.inference.lammps.runner import lammps_command, lammps_env

    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "in.scaling").write_text(SCALING_INPUT.format(data=data, model=model, mode=MODES[mode],
                                                                 steps=steps, warmup=warmup))
        env = lammps_env()
        env["OMP_NUM_THREADS"] = "1"
        proc = subprocess.run(lammps_command(np_ranks) + ["-in", "in.scaling", "-log", "none", "-nocite"],
                              cwd=tmp, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout[-3000:])
    return _parse(proc.stdout)


def summarise(rows: dict) -> dict:
    """Speed-ups, parallel efficiencies and energy agreement of one box's runs
    (keys '<mode> np<N>')."""
    base = rows["halo np1"]
    out = {}
    for mode in MODES:
        one, two = rows[f"{mode} np1"], rows[f"{mode} np2"]
        out[f"{mode} speedup_np2"] = one["ms_per_step"] / two["ms_per_step"]
        out[f"{mode} efficiency_np2"] = out[f"{mode} speedup_np2"] / 2
    out["halo np2 vs full shell np1"] = rows["full shell np1"]["ms_per_step"] / rows["halo np2"]["ms_per_step"]
    out["max_rel_diff_final_pe"] = max(abs(r["final_pe"] - base["final_pe"]) / abs(base["final_pe"])
                                       for r in rows.values())
    out["max_rel_diff_final_etotal"] = max(abs(r["final_etotal"] - base["final_etotal"]) / abs(base["final_etotal"])
                                           for r in rows.values())
    return out


def markdown(results: dict) -> list:
    lines = [
        "| atoms | box (A) | mode | ranks | ms/step | steps/s | speed-up vs 1 rank | parallel efficiency | "
        "halo comm ms/step (slowest rank) | LAMMPS comm ms/step | ghosts/rank |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for box in results["boxes"].values():
        for mode in MODES:
            for npr in (1, 2):
                r = box["runs"][f"{mode} np{npr}"]
                s = box["summary"][f"{mode} speedup_np2"] if npr == 2 else 1.0
                halo_comm = (f"{r['pair_ms_per_call']['halo_comm']:.1f} ({r['pair_ms_per_call']['halo_comm_slowest_rank']:.1f})"
                             if mode == "halo" else "-")
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
