"""The one in-memory record every reader yields and the store round-trips.

Units are fixed inside the package: eV, Å, eV/Å. Readers convert before they
build a ``Structure``, so nothing downstream ever sees kcal/mol or Hartree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from empp_ff._elements import MAX_ATOMIC_NUMBER

__all__ = ["Structure"]


@dataclass
class Structure:
    """One labelled (or unlabelled) atomic configuration.

    ``energy`` / ``forces`` may be ``None``: energy-only data and label-free
    data (self-supervised pre-training) are first-class.
    """

    atomic_numbers: np.ndarray
    positions: np.ndarray
    energy: float | None = None
    forces: np.ndarray | None = None
    cell: np.ndarray | None = None
    pbc: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=np.bool_))
    name: str = ""

    def __post_init__(self) -> None:
        z = np.asarray(self.atomic_numbers)
        if z.ndim != 1:
            raise ValueError(f"Structure {self.name!r}: atomic_numbers must be 1-D [n], got shape {z.shape}")
        if z.size and not np.issubdtype(z.dtype, np.integer):
            if not np.all(np.equal(np.mod(z, 1), 0)):
                raise ValueError(f"Structure {self.name!r}: atomic_numbers must be integers, got {z.dtype}")
        self.atomic_numbers = z.astype(np.int64, copy=False)
        n = z.shape[0]
        if n and (self.atomic_numbers.min() < 1 or self.atomic_numbers.max() > MAX_ATOMIC_NUMBER):
            raise ValueError(
                f"Structure {self.name!r}: atomic_numbers must be in 1..{MAX_ATOMIC_NUMBER}, got range "
                f"{self.atomic_numbers.min()}..{self.atomic_numbers.max()}"
            )
        pos = np.asarray(self.positions, dtype=np.float64)
        if pos.shape != (n, 3):
            raise ValueError(f"Structure {self.name!r}: positions must have shape ({n}, 3), got {pos.shape}")
        self.positions = pos
        if self.energy is not None:
            e = np.asarray(self.energy, dtype=np.float64)
            if e.size != 1:
                raise ValueError(f"Structure {self.name!r}: energy must be a scalar, got shape {e.shape}")
            self.energy = float(e.reshape(()))
        if self.forces is not None:
            f = np.asarray(self.forces, dtype=np.float64)
            if f.shape != (n, 3):
                raise ValueError(f"Structure {self.name!r}: forces must have shape ({n}, 3), got {f.shape}")
            self.forces = f
        if self.cell is not None:
            c = np.asarray(self.cell, dtype=np.float64)
            if c.shape != (3, 3):
                raise ValueError(f"Structure {self.name!r}: cell must have shape (3, 3), got {c.shape}")
            self.cell = c
        pbc = np.asarray(self.pbc, dtype=np.bool_)
        if pbc.shape == ():
            pbc = np.repeat(pbc, 3)
        if pbc.shape != (3,):
            raise ValueError(f"Structure {self.name!r}: pbc must have shape (3,), got {pbc.shape}")
        self.pbc = pbc
        if pbc.any() and (self.cell is None or abs(np.linalg.det(self.cell)) < 1e-12):
            raise ValueError(f"Structure {self.name!r}: pbc={pbc.tolist()} needs a non-singular cell, got {self.cell}")
        self.name = "" if self.name is None else str(self.name)

    @property
    def n_atoms(self) -> int:
        return int(self.atomic_numbers.shape[0])
