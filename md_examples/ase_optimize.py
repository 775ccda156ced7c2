#!/usr/bin/env python
"""Relax aspirin with BFGS to fmax 0.01 eV/Å using an exported empp-ff model.

    python md_examples/ase_optimize.py aspirin.pt
    python md_examples/ase_optimize.py --make-demo   # untrained demo model, for a dry run
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default="aspirin.pt", help="model file (default: aspirin.pt)")
    parser.add_argument("--structure", default=str(HERE / "aspirin.xyz"))
    parser.add_argument("--fmax", type=float, default=0.01, help="eV/Å")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default="aspirin_relaxed.xyz")
    parser.add_argument("--make-demo", action="store_true", help="write an untrained demo model first")
    args = parser.parse_args(argv)

    from ase.io import write

    from empp_ff import EMPPCalculator
    from empp_ff.inference.md import optimize, read_structure

    model = Path(args.model)
    if args.make_demo:
        from empp_ff.testing.models import write_untrained_demo_model

        write_untrained_demo_model(model)
        print(f"wrote an untrained demo model to {model} (random weights: no chemistry!)")
    if not model.exists():
        print(f"model file {model} not found: export one with `empp-ff export RUN_DIR -o {model}` "
              "or run with --make-demo for an untrained demo model", file=sys.stderr)
        return 1
    atoms = read_structure(args.structure)
    calc = EMPPCalculator(model, device=args.device)
    result = optimize(atoms, calc, fmax=args.fmax, optimizer="BFGS", steps=args.steps, logfile="-")
    write(args.out, atoms)
    status = "converged" if result.converged else "NOT converged"
    print(f"{status} in {result.steps} steps: max force {result.final_fmax:.4f} eV/Å, "
          f"energy {result.initial_energy:.4f} -> {result.final_energy:.4f} eV; wrote {args.out}")
    return 0 if result.converged else 2


if __name__ == "__main__":
    sys.exit(main())
