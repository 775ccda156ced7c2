#!/usr/bin/env python
"""Aspirin MD with an exported empp-ff model: Langevin equilibration, then NVE
with an energy-drift report.

    python md_examples/ase_md_aspirin.py aspirin.pt
    python md_examples/ase_md_aspirin.py --make-demo   # untrained 8-channel model, for a dry run

Get a real model with `empp-ff export RUN_DIR -o aspirin.pt`. The start
structure is frame 0 of MD17 aspirin (md_examples/aspirin.xyz, Å).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def make_demo_model(path: Path) -> None:
    """Write an UNTRAINED model (random weights) so the script can be tried end to end."""
    from empp_ff.testing.models import write_untrained_demo_model

    write_untrained_demo_model(path)
    print(f"wrote an untrained demo model to {path} (random weights: no chemistry!)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default="aspirin.pt", help="model file (default: aspirin.pt)")
    parser.add_argument("--structure", default=str(HERE / "aspirin.xyz"))
    parser.add_argument("--temperature", type=float, default=300.0, help="K")
    parser.add_argument("--dt", type=float, default=0.5, help="time step, fs")
    parser.add_argument("--equil-steps", type=int, default=200)
    parser.add_argument("--nve-steps", type=int, default=400)
    parser.add_argument("--device", default=None, help="cpu / cuda (default: cuda if available)")
    parser.add_argument("--out", default="aspirin_nve.traj")
    parser.add_argument("--make-demo", action="store_true", help="write an untrained demo model first")
    args = parser.parse_args(argv)

    from empp_ff import EMPPCalculator
    from empp_ff.inference.md import read_structure, run_md

    model = Path(args.model)
    if args.make_demo:
        make_demo_model(model)
    if not model.exists():
        print(f"model file {model} not found: export one with `empp-ff export RUN_DIR -o {model}` "
              "or run with --make-demo for an untrained demo model", file=sys.stderr)
        return 1
    atoms = read_structure(args.structure)
    calc = EMPPCalculator(model, device=args.device)
    print(f"{len(atoms)} atoms ({atoms.get_chemical_formula()}), model {model} "
          f"[{calc.metadata['dtype']}, r_max {calc.r_max} Å] on {calc.device}")

    # 1) Langevin equilibration at the target temperature.
    eq = run_md(atoms, calc, steps=args.equil_steps, dt_fs=args.dt, temperature=args.temperature,
                ensemble="langevin", friction=0.02, seed=0)
    print(f"Langevin: {args.equil_steps} steps, mean T {eq.summary()['mean_temperature_K']:.0f} K, "
          f"{eq.summary()['steps_per_s']:.0f} steps/s")

    # 2) NVE from the equilibrated velocities: total energy should be conserved.
    nve = run_md(atoms, calc, steps=args.nve_steps, dt_fs=args.dt, ensemble="nve",
                 init_velocities=False, trajectory=args.out, traj_interval=10)
    s = nve.summary()
    print(f"NVE: {args.nve_steps} steps ({args.nve_steps * args.dt / 1000:.2f} ps), mean T "
          f"{s['mean_temperature_K']:.0f} K, {s['steps_per_s']:.0f} steps/s")
    print(f"energy drift {nve.drift_ev_per_atom_per_ps:+.2e} eV/atom/ps, "
          f"max |E - <E>| {nve.max_abs_fluctuation_ev_per_atom:.2e} eV/atom; trajectory {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
