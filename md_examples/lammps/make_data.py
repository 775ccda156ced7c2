"""Write the LAMMPS data files of these examples (and, optionally, a demo model).

    python make_data.py                  # aspirin.data, box.data
    python make_data.py --demo-model demo.pt   # + a tiny RANDOM-weight model for smoke tests

* aspirin.data: one aspirin molecule (first rMD17 geometry, 21 atoms) centred in a
  30 A periodic box. Types: 1 = H, 2 = C, 3 = O.
* box.data: a periodic liquid-like box of water and methanol (H, C, O): molecules
  on a simple-cubic lattice with random orientations, ~1 g/cm^3, wrapped so that
  molecules cross the periodic (and, under MPI, the domain) boundaries.
  Default 9^3 = 729 molecules, ~80 % water and ~20 % methanol: 2628 atoms, 30.6 A box.
  Types: 1 = H, 2 = C, 3 = O.

The structures are those of ``empp_ff.testing.structures`` (``aspirin(box=30.0)``,
``liquid_box(n_side)``), which the LAMMPS benchmarks and tests use too.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ase import Atoms
from ase.io.lammpsdata import write_lammps_data

from empp_ff.testing.structures import aspirin, liquid_box

HERE = Path(__file__).resolve().parent
ELEMENTS = ["H", "C", "O"]


def write(atoms: Atoms, path: Path) -> None:
    with open(path, "w") as fd:
        write_lammps_data(fd, atoms, specorder=ELEMENTS, masses=True, units="metal", atom_style="atomic")
    print(f"wrote {path}: {len(atoms)} atoms, box {atoms.cell.lengths().round(2).tolist()} A, types {ELEMENTS}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--outdir", default=str(HERE))
    ap.add_argument("--n-side", type=int, default=9, help="lattice size of box.data (n^3 molecules)")
    ap.add_argument("--demo-model", default=None,
                    help="also write a tiny random-weight model file here (smoke tests only: no chemistry)")
    args = ap.parse_args()
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    write(aspirin(box=30.0), out / "aspirin.data")
    write(liquid_box(args.n_side), out / "box.data")
    if args.demo_model:
        from empp_ff.testing.models import make_model

        make_model(args.demo_model, atomic_numbers=(1, 6, 8), dtype="float64", num_channels=16,
                   num_interactions=2, r_max=5.0, perturb=0.0)
        print(f"wrote {args.demo_model} (random weights, float64, r_max 5 A, 2 interactions)")


if __name__ == "__main__":
    main()
