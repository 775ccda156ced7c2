"""The one validation at the data boundary: every structure a reader yields passes here.

* Non-finite (NaN/inf) positions, cells, energies or forces are an error naming
  the file, the frame and the field. A NaN energy is never read as "no energy":
  a structure is unlabelled only when its label is absent from the file. With
  ``drop_nonfinite=True`` such frames are skipped instead and counted.
* GEOM-style files (one dataset per molecule) carry the same labels for every
  molecule; a molecule group or conformer without the energy or forces that the
  others have is an error (an incomplete file), unless
  ``allow_missing_labels=True`` keeps it without that label (counted).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from empp_ff.data.fileio import DataError
from empp_ff.data.structure import Structure

__all__ = ["DataError", "ValidationReport", "validated", "nonfinite_fields"]

#: Formats whose labels are per molecule group: a group lacking them is suspicious.
GROUPED_FORMATS = ("geom_h5", "geom_msgpack")


@dataclass
class ValidationReport:
    """What the validation did to a stream (filled while it is consumed)."""

    n_read: int = 0
    dropped_nonfinite: int = 0
    # structures kept, by which labels they carry: (has energy, has forces) -> count
    label_counts: dict = field(default_factory=dict)

    def count_labels(self, s: Structure) -> None:
        key = (s.energy is not None, s.forces is not None)
        self.label_counts[key] = self.label_counts.get(key, 0) + 1

    @property
    def missing_labels_kept(self) -> int:
        """Structures kept without a label (energy or forces) that others in the file carry."""
        has_e = any(e for e, _ in self.label_counts)
        has_f = any(f for _, f in self.label_counts)
        return sum(n for (e, f), n in self.label_counts.items() if (has_e and not e) or (has_f and not f))


def _atoms_text(rows: np.ndarray) -> str:
    idx = np.flatnonzero(rows)
    return f"atom(s) {idx[:8].tolist()}" + (" ..." if idx.size > 8 else "")


def nonfinite_fields(s: Structure) -> list[str]:
    """Descriptions of the fields of ``s`` holding NaN or inf (empty when all finite)."""
    bad = []
    rows = ~np.isfinite(s.positions).all(axis=1)
    if rows.any():
        bad.append(f"positions of {_atoms_text(rows)}")
    if s.cell is not None and not np.isfinite(s.cell).all():
        bad.append("cell")
    if s.energy is not None and not np.isfinite(s.energy):
        bad.append(f"energy ({s.energy})")
    if s.forces is not None:
        rows = ~np.isfinite(s.forces).all(axis=1)
        if rows.any():
            bad.append(f"forces of {_atoms_text(rows)}")
    return bad


def _frame(path: str, i: int, s: Structure) -> str:
    return f"{path}: frame {i}" + (f" ({s.name!r})" if s.name else "")


class _LabelPresence:
    """GEOM-style files: every molecule carries the labels the first one has."""

    def __init__(self, path: str, allow_missing: bool):
        self.path, self.allow = path, allow_missing
        self.first: tuple[int, Structure, bool, bool] | None = None

    def __call__(self, i: int, s: Structure) -> None:
        has = (s.energy is not None, s.forces is not None)
        if self.first is None:
            self.first = (i, s, *has)
            return
        j, first, *first_has = self.first
        for label, have, had in zip(("energy", "forces"), has, first_has):
            if have == had:
                continue
            if self.allow:
                return
            lacking, other = (_frame(self.path, i, s), f"frame {j} ({first.name!r})") if had else (
                _frame(self.path, j, first), f"frame {i} ({s.name!r})")
            raise DataError(
                f"{lacking} has no {label} while {other} has one: in a file of molecule groups a "
                f"group without the {label} of the others is incomplete and would be stored as "
                f"unlabelled. Add the missing {label}, or set data.allow_missing_labels: true "
                "(`--allow-missing-labels` for `empp-ff data convert`) to keep such structures "
                f"without {label}."
            )


def _check(structures: Iterable[Structure], path: str, fmt: str, drop_nonfinite: bool,
           allow_missing_labels: bool, report: ValidationReport) -> Iterator[Structure]:
    presence = _LabelPresence(path, allow_missing_labels) if fmt in GROUPED_FORMATS else None
    for i, s in enumerate(structures):
        report.n_read += 1
        bad = nonfinite_fields(s)
        if bad:
            if drop_nonfinite:
                report.dropped_nonfinite += 1
                continue
            raise DataError(
                f"{_frame(path, i, s)}: non-finite (NaN/inf) {'; '.join(bad)}. Fix the file, or set "
                "data.drop_nonfinite: true (`--drop-nonfinite` for `empp-ff data convert`) to drop "
                "such frames."
            )
        if presence is not None:
            presence(i, s)
        report.count_labels(s)
        yield s
    if report.n_read == 0:
        raise DataError(f"{path}: no structures in the file (format {fmt!r})")
    if report.dropped_nonfinite == report.n_read:
        raise DataError(f"{path}: all {report.n_read} frames hold non-finite values (dropped); nothing is left")


def validated(
    structures: Iterable[Structure],
    path: str,
    fmt: str,
    drop_nonfinite: bool = False,
    allow_missing_labels: bool = False,
    report: ValidationReport | None = None,
) -> Iterator[Structure]:
    """Yield ``structures`` checked as the module docstring says; ``report`` counts."""
    return _check(structures, path, fmt, drop_nonfinite, allow_missing_labels,
                  report if report is not None else ValidationReport())
