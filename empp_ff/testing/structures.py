"""Test and benchmark structures: aspirin, periodic boxes of small molecules (random
placements, a water/methanol lattice, a water box at a given density) and compact clusters.

Every builder is deterministic: random choices come from a local generator seeded by its
``seed`` argument, never from the global random state.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

#: Aspirin, configuration 0 of rMD17 (``rmd17_aspirin.npz``, ``coords[0]``, Å): the geometry
#: of ``md_examples/aspirin.xyz`` and ``md_examples/lammps/aspirin.data``.
ASPIRIN_NUMBERS = (6, 6, 8, 8, 6, 6, 6, 6, 6, 6, 6, 8, 8, 1, 1, 1, 1, 1, 1, 1, 1)
ASPIRIN_POSITIONS = (
    (2.959798984536905, 1.2347530173691457, -0.501263369711247),
    (1.7882411684792012, 0.6017808190325878, 0.23537823599038124),
    (1.5643557164846034, 0.7036605475630778, 1.4568908215937608),
    (1.2295741002637026, -0.25157475953261565, -0.6136239431747157),
    (0.026829342465211955, -0.7170758152053366, -0.2512991801479405),
    (-0.2772854459529984, -2.0404332133353384, -0.6841007647370119),
    (-1.4949363297691542, -2.498420977881266, -0.28598097381251397),
    (-2.3784458564493143, -1.733128694995492, 0.41405755507216846),
    (-2.02986696784584, -0.4275221295929018, 0.7738656905705074),
    (-0.8428180139987823, 0.14344650919702462, 0.42556275070060123),
    (-0.6010219342704863, 1.6088163067026677, 0.6139778320704142),
    (0.25857832444182777, 2.2792338832030374, 0.06783688145371256),
    (-1.636657091742111, 2.1589313849487226, 1.2600270699746885),
    (3.632496021606435, 1.796429895099881, 0.2008667905122468),
    (2.4461340127168882, 1.8783621239984791, -1.253344885259271),
    (3.386627105830599, 0.2731940822982325, -0.9541630991173542),
    (0.41255662405112326, -2.7628012812135245, -1.1747839998342278),
    (-1.7975425640507765, -3.4837052860455624, -0.668334265364243),
    (-3.369274439417572, -2.2327455645733973, 0.6184312802217008),
    (-2.7211412159052997, 0.09096998292480371, 1.3558719263793184),
    (-1.4517493406422064, 3.1172099921493097, 1.362231027583136),
)


def aspirin(box: Optional[float] = None):
    """Aspirin (21 atoms, rMD17 configuration 0): a molecule without a cell, or with ``box``
    centred in a periodic cube of that edge (Å), as LAMMPS needs it."""
    from ase import Atoms

    atoms = Atoms(numbers=ASPIRIN_NUMBERS, positions=np.array(ASPIRIN_POSITIONS))
    if box is not None:
        atoms.cell = [box] * 3
        atoms.pbc = True
        atoms.center()
    return atoms


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation matrix [3, 3] from a normalised Gaussian quaternion
    (draws four normals from ``rng``)."""
    q = rng.normal(size=4)
    a, b, c, d = q / np.linalg.norm(q)
    return np.array(
        [
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
        ]
    )


def molecular_box(
    n_molecules: int,
    box: float,
    *,
    molecules: Sequence[str] = ("H2O", "CH3OH", "CO2"),
    min_distance: float = 2.0,
    seed: int = 0,
    wrap: bool = True,
):
    """A periodic cubic box of randomly placed and oriented small molecules (H, C, O),
    wrapped so that molecules cross the periodic boundaries; no two atoms of different
    molecules closer than ``min_distance`` (minimum image)."""
    from ase import Atoms
    from ase.build import molecule

    rng = np.random.default_rng(seed)
    templates = [molecule(m) for m in molecules]
    positions: List[np.ndarray] = []
    numbers: List[int] = []
    placed = np.zeros((0, 3))
    tries = 0
    while len(positions) < n_molecules:
        tries += 1
        if tries > 200000:
            raise RuntimeError(f"could not place {n_molecules} molecules in a {box} A box")
        t = templates[len(positions) % len(templates)]
        p = t.get_positions() - t.get_center_of_mass()
        p = p @ random_rotation(rng).T + rng.uniform(0, box, size=3)
        if len(placed):
            diff = p[:, None, :] - placed[None, :, :]
            diff -= box * np.round(diff / box)
            if np.min(np.linalg.norm(diff, axis=-1)) < min_distance:
                continue
        positions.append(p)
        numbers.extend(t.get_atomic_numbers())
        placed = np.concatenate([placed, p])
    atoms = Atoms(numbers=numbers, positions=np.concatenate(positions), cell=np.eye(3) * box, pbc=True)
    if wrap:
        atoms.wrap()
    return atoms


def liquid_box(n_side: int = 9, spacing: float = 3.4, methanol_fraction: float = 0.2, seed: int = 7):
    """A periodic liquid-like box of water and methanol (H, C, O): ``n_side``³ molecules on a
    simple-cubic lattice of ``spacing`` Å, randomly oriented and displaced (0.2 Å), about
    ``methanol_fraction`` of them methanol, wrapped so that molecules cross the periodic (and,
    under MPI, the domain) boundaries. The defaults give ``md_examples/lammps/box.data``: 729
    molecules, 2628 atoms, a 30.6 Å box, ~1 g/cm³."""
    from ase import Atoms
    from ase.build import molecule

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


def water_box(n_molecules: int = 350, density: float = 1.0, seed: int = 0):
    """A periodic cubic box of ``n_molecules`` rigid waters at ``density`` g/cm³, randomly
    oriented on randomly chosen sites of a cubic grid (350: 1050 atoms, 21.9 Å; the ASE and
    LAMMPS speed benchmarks' large system)."""
    from ase import Atoms
    from scipy.spatial.transform import Rotation

    mass = 18.015 * 1.66054e-24  # g
    volume = n_molecules * mass / density * 1e24  # Å^3
    length = volume ** (1 / 3)
    grid = int(np.ceil(n_molecules ** (1 / 3)))
    rng = np.random.default_rng(seed)
    sites = np.array(list(np.ndindex(grid, grid, grid)), dtype=float)
    sites = sites[rng.choice(len(sites), n_molecules, replace=False)]
    sites = (sites + 0.5) * (length / grid)
    water = np.array([[0.0, 0.0, 0.0], [0.9572, 0.0, 0.0], [-0.2400, 0.9266, 0.0]])
    rotations = Rotation.random(n_molecules, random_state=seed).as_matrix()
    positions = np.concatenate([site + water @ rot.T for site, rot in zip(sites, rotations)])
    return Atoms("OH2" * n_molecules, positions=positions, cell=np.eye(3) * length, pbc=True)


def separated_cluster(seed: int = 0, n: int = 9, min_distance: float = 0.9):
    """(positions [n, 3] Å, atomic numbers [n] from H C O): a compact random cluster in a
    4 Å cube with no two atoms closer than ``min_distance``."""
    rng = np.random.default_rng(seed)
    pos: List[np.ndarray] = []
    while len(pos) < n:
        p = rng.uniform(-2.0, 2.0, size=3)
        if all(np.linalg.norm(p - q) > min_distance for q in pos):
            pos.append(p)
    return np.array(pos), rng.choice([1, 6, 8], size=n)
