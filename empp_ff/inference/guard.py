"""The instability guard of ASE-side simulations (calculator, MD, optimisation).

A force field driven outside its training data can return NaN, pull atoms onto
each other or tear a molecule apart while MD carries on and writes nonsense.
The guard stops such a simulation with :class:`InstabilityError`, naming the
atoms and the cause; the MD and optimisation drivers add the step.

Criteria (each can be switched off with ``None``):

* non-finite energy or forces (the atoms whose forces are NaN/inf);
* two atoms closer than ``min_distance`` (Å; default 0.3, the same default as
  ``pair_style empp ... min_distance 0.3``);
* molecules only (no periodic direction): a bond of the reference structure
  (the first one seen with these atomic numbers) stretched by more than
  ``max_bond_stretch`` Å, the "Forces are not enough" stability criterion
  (Fu et al., 2022: a simulation is unstable once a bond length deviates from
  its reference by more than 0.5 Å).
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

__all__ = ["InstabilityError", "InstabilityGuard", "DEFAULT_MIN_DISTANCE", "DEFAULT_MAX_BOND_STRETCH"]

DEFAULT_MIN_DISTANCE = 0.3  # Å
DEFAULT_MAX_BOND_STRETCH = 0.5  # Å, the `empp-ff md` default (Fu et al. 2022); opt: off unless asked
_BOND_FACTOR = 1.2  # a bond: closer than 1.2 x the sum of covalent radii in the reference


def bonded_pairs(numbers: np.ndarray, positions: np.ndarray):
    """(pairs [B, 2] with i < j, lengths [B]) of the bonds of a molecule: atoms closer than
    1.2 x the sum of their covalent radii (the guard's and the stability test's definition)."""
    from ase.data import covalent_radii

    radii = covalent_radii[numbers]
    d = np.linalg.norm(positions[:, None, :] - positions[None, :, :], axis=-1)
    bonded = np.triu(d < _BOND_FACTOR * (radii[:, None] + radii[None, :]), k=1)
    return np.argwhere(bonded), d[bonded]


class InstabilityError(RuntimeError):
    """The simulation left the region where the model's predictions mean anything."""

    def __init__(self, reason: str, atoms: Sequence[int] = (), where: str = "", outcome: str = ""):
        self.reason, self.atoms, self.where, self.outcome = reason, [int(i) for i in atoms], where, outcome
        message = f"{where}: {reason}" if where else reason
        super().__init__(f"{message}. Stopped; {outcome}." if outcome else message)

    def at(self, where: str, outcome: str = "") -> InstabilityError:
        """The same error, located (e.g. ``"MD step 120 (t = 60.0 fs)"``), with what the stopped
        run left (e.g. ``"the 12 frame(s) before it are in md.traj"``)."""
        return InstabilityError(self.reason, self.atoms, where, outcome)


def _label(numbers: np.ndarray, i: int) -> str:
    from ase.data import chemical_symbols

    z = int(numbers[i])
    return f"{i} ({chemical_symbols[z] if 0 < z < len(chemical_symbols) else z})"


def _atom_list(idx: np.ndarray, numbers: np.ndarray) -> str:
    shown = ", ".join(_label(numbers, int(i)) for i in idx[:8])
    return shown + (f" and {len(idx) - 8} more" if len(idx) > 8 else "")


class InstabilityGuard:
    def __init__(self, min_distance: Optional[float] = DEFAULT_MIN_DISTANCE,
                 max_bond_stretch: Optional[float] = None):
        for name, value in (("min_distance", min_distance), ("max_bond_stretch", max_bond_stretch)):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 or None (off), got {value}")
        self.min_distance = min_distance
        self.max_bond_stretch = max_bond_stretch
        self._ref_numbers: Optional[np.ndarray] = None
        self._bonds: Optional[np.ndarray] = None  # [B, 2]
        self._bond_lengths: Optional[np.ndarray] = None

    # -- before the model runs ----------------------------------------------------------
    def check_pairs(self, numbers: np.ndarray, pairs: np.ndarray, lengths: np.ndarray) -> None:
        """``pairs`` [2, E] and their ``lengths`` [E] (any neighbour list within r_max)."""
        if self.min_distance is None or len(lengths) == 0:
            return
        k = int(np.argmin(lengths))
        self.check_closest(numbers, int(pairs[0, k]), int(pairs[1, k]), float(lengths[k]))

    def check_closest(self, numbers: np.ndarray, i: int, j: int, distance: float) -> None:
        """The closest pair (i, j) at ``distance`` Å."""
        if self.min_distance is not None and distance < self.min_distance:
            raise InstabilityError(
                f"atoms {_label(numbers, i)} and {_label(numbers, j)} are {distance:.3f} Å apart, "
                f"closer than min_distance={self.min_distance} Å: the structure has collapsed (or overlapping "
                "atoms were given), where the model's predictions are meaningless",
                atoms=(i, j),
            )

    def check_bonds(self, numbers: np.ndarray, positions: np.ndarray, periodic: bool) -> None:
        if self.max_bond_stretch is None or periodic:
            return
        if self._ref_numbers is None or not np.array_equal(self._ref_numbers, numbers):
            self._set_reference(numbers, positions)
            return
        if not len(self._bonds):
            return
        i, j = self._bonds[:, 0], self._bonds[:, 1]
        stretch = np.linalg.norm(positions[j] - positions[i], axis=1) - self._bond_lengths
        k = int(np.argmax(np.abs(stretch)))
        if abs(stretch[k]) > self.max_bond_stretch:
            a, b = int(i[k]), int(j[k])
            raise InstabilityError(
                f"the bond between atoms {_label(numbers, a)} and {_label(numbers, b)} changed from "
                f"{self._bond_lengths[k]:.3f} Å to {self._bond_lengths[k] + stretch[k]:.3f} Å, more than "
                f"max_bond_stretch={self.max_bond_stretch} Å: the molecule is breaking up (unstable dynamics)",
                atoms=(a, b),
            )

    def _set_reference(self, numbers: np.ndarray, positions: np.ndarray) -> None:
        self._bonds, self._bond_lengths = bonded_pairs(numbers, positions)
        self._ref_numbers = numbers.copy()

    def reset_reference(self) -> None:
        """Take the next structure as the bond reference (e.g. a new MD run)."""
        self._ref_numbers = None

    # -- after the model ran ------------------------------------------------------------
    @staticmethod
    def check_results(numbers: np.ndarray, energy: float, forces: np.ndarray) -> None:
        bad = np.flatnonzero(~np.isfinite(forces).all(axis=1))
        if len(bad):
            raise InstabilityError(f"non-finite (NaN/inf) forces on atom(s) {_atom_list(bad, numbers)}", atoms=bad)
        if not np.isfinite(energy):
            raise InstabilityError(f"non-finite energy ({energy})")


def finite_frame(atoms) -> List[int]:
    """Atoms with non-finite positions (empty when the frame may be written)."""
    return np.flatnonzero(~np.isfinite(atoms.positions).all(axis=1)).tolist()
