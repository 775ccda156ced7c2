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
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import molecule
from ase.io.lammpsdata import write_lammps_data

HERE = Path(__file__).resolve().parent
ELEMENTS = ["H", "C", "O"]

# rMD17 aspirin, configuration 0 (Angstrom), nuclear charges 6 6 8 8 6 6 6 6 6 6 6 8 8 1 x 8
ASPIRIN_Z = [6, 6, 8, 8, 6, 6, 6, 6, 6, 6, 6, 8, 8, 1, 1, 1, 1, 1, 1, 1, 1]


def aspirin() -> Atoms:
    try:  # the shared rMD17 file, when this runs inside the project
        d = np.load("/work/shared/data/rmd17_aspirin.npz")
        pos = d["coords"][0]
    except Exception:
        pos = np.loadtxt(HERE / "aspirin.xyz", skiprows=2, usecols=(1, 2, 3))
    atoms = Atoms(numbers=ASPIRIN_Z, positions=pos, cell=[30.0] * 3, pbc=True)
    atoms.center()
    return atoms


def random_rotation(rng) -> np.ndarray:
    q = rng.normal(size=4)
    a, b, c, d = q / np.linalg.norm(q)
    return np.array(
        [
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
        ]
    )


def liquid_box(n_side: int = 9, spacing: float = 3.4, methanol_fraction: float = 0.2, seed: int = 7) -> Atoms:
    rng = np.random.default_rng(seed)
    water, methanol = molecule("H2O"), molecule("CH3OH")
    numbers, positions = [], []
    for ix in range(n_side):
        for iy in range(n_side):
            for iz in range(n_side):
                m = methanol if rng.random() < methanol_fraction else water
                p = m.get_positions() - m.get_center_of_mass()
                p = p @ random_rotation(rng).T + spacing * (np.array([ix, iy, iz]) + 0.5)
                p += rng.normal(scale=0.2, size=3)
                positions.append(p)
                numbers.extend(m.get_atomic_numbers())
    box = n_side * spacing
    atoms = Atoms(numbers=numbers, positions=np.concatenate(positions), cell=[box] * 3, pbc=True)
    atoms.wrap()
    return atoms


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
    write(aspirin(), out / "aspirin.data")
    write(liquid_box(args.n_side), out / "box.data")
    if args.demo_model:
        from empp_ff.testing.models import make_model

        make_model(args.demo_model, atomic_numbers=(1, 6, 8), dtype="float64", num_channels=16,
                   num_interactions=2, r_max=5.0, perturb=0.0)
        print(f"wrote {args.demo_model} (random weights, float64, r_max 5 A, 2 interactions)")


if __name__ == "__main__":
    main()
