"""Test structures: periodic boxes of randomly placed small molecules."""

from __future__ import annotations

from typing import List, Sequence

import numpy as np


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
    wrapped so that molecules cross the periodic boundaries."""
    from ase import Atoms
    from ase.build import molecule

    rng = np.random.default_rng(seed)
    templates = [molecule(m) for m in molecules]
    positions: List[np.ndarray] = []
    numbers: List[int] = []
    placed = np.zeros((0, 3))
    cell = np.eye(3) * box
    tries = 0
    while len(positions) < n_molecules:
        tries += 1
        if tries > 200000:
            raise RuntimeError(f"could not place {n_molecules} molecules in a {box} A box")
        t = templates[len(positions) % len(templates)]
        p = t.get_positions() - t.get_center_of_mass()
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        a, b, c, d = q
        R = np.array(
            [
                [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
                [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
                [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
            ]
        )
        p = p @ R.T + rng.uniform(0, box, size=3)
        if len(placed):
            diff = p[:, None, :] - placed[None, :, :]
            diff -= box * np.round(diff / box)
            if np.min(np.linalg.norm(diff, axis=-1)) < min_distance:
                continue
        positions.append(p)
        numbers.extend(t.get_atomic_numbers())
        placed = np.concatenate([placed, p])
    atoms = Atoms(numbers=numbers, positions=np.concatenate(positions), cell=cell, pbc=True)
    if wrap:
        atoms.wrap()
    return atoms


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
