"""Turn an ``ase.Atoms`` into a Structure, looking labels up where ASE may put them;
read ASE's files with errors that name them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from empp_ff.data.fileio import DataError
from empp_ff.data.structure import Structure

_MISSING = object()


def _calc_results(atoms: Any) -> Mapping[str, Any]:
    calc = getattr(atoms, "calc", None)
    return getattr(calc, "results", None) or {}


def lookup(atoms: Any, key: str, per_atom: bool, extra: Mapping[str, Any] | None = None) -> Any:
    """Find ``key`` in atoms.arrays (per-atom) / atoms.info, then calc results, then ``extra``."""
    sources: list[Mapping[str, Any]] = [atoms.arrays if per_atom else atoms.info, _calc_results(atoms)]
    if extra:
        sources.append(extra)
    for src in sources:
        if key in src and src[key] is not None:
            return src[key]
    return _MISSING


def available_keys(atoms: Any, extra: Mapping[str, Any] | None = None) -> list[str]:
    keys = set(atoms.info) | set(atoms.arrays) | set(_calc_results(atoms))
    if extra:
        keys |= set(extra)
    return sorted(map(str, keys))


def ase_frames(path: str, what: str, frames: Callable[[], Iterable[Any]]) -> Iterator[Any]:
    """The items of ``frames()``, ASE's lazy reader of ``path``, with its parse errors (``XYZError``,
    an OSError without errno; ``sqlite3.DatabaseError``; ValueError ...) as a DataError naming the file."""
    i = 0
    try:
        for item in frames():
            yield item
            i += 1
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path!r}: cannot read it as {what} (frame {i}: {type(exc).__name__}: {exc})") from exc


def atoms_to_structure(
    atoms: Any,
    energy_key: str,
    forces_key: str,
    name: str = "",
    extra: Mapping[str, Any] | None = None,
) -> Structure:
    """Convert one Atoms (units assumed eV, Å) to a Structure; missing labels become None."""
    e = lookup(atoms, energy_key, per_atom=False, extra=extra)
    f = lookup(atoms, forces_key, per_atom=True, extra=extra)
    pbc = np.asarray(atoms.pbc, dtype=np.bool_)
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    has_cell = pbc.any() or abs(np.linalg.det(cell)) > 1e-12
    nm = atoms.info.get("name", atoms.info.get("config_type", name))
    return Structure(
        atomic_numbers=atoms.numbers,
        positions=atoms.positions,
        energy=None if e is _MISSING else float(np.asarray(e).reshape(())),
        forces=None if f is _MISSING else np.asarray(f, dtype=np.float64),
        cell=cell if has_cell else None,
        pbc=pbc,
        name=str(nm) if nm is not None else "",
    )


def check_requested_keys(
    path: str,
    fmt: str,
    atoms: Any,
    energy_key: str,
    forces_key: str,
    extra: Mapping[str, Any] | None = None,
    n_checked: int = 1,
) -> None:
    """Raise if non-default keys the user asked for are absent from ``atoms`` (typos fail loudly)."""
    wanted = []
    if energy_key != "energy" and lookup(atoms, energy_key, False, extra) is _MISSING:
        wanted.append(f"energy_key={energy_key!r}")
    if forces_key != "forces" and lookup(atoms, forces_key, True, extra) is _MISSING:
        wanted.append(f"forces_key={forces_key!r}")
    if wanted:
        raise ValueError(
            f"{path!r} (format {fmt!r}): no {', '.join(wanted)} in the first {n_checked} structure(s). "
            f"Found keys {available_keys(atoms, extra)} (first structure); expected the requested key(s)."
        )


#: Non-default label keys must appear within this many leading structures.
KEY_CHECK_WINDOW = 1000


class KeyChecker:
    """Fails if a requested non-default key is never seen in the leading structures.

    The default keys may be absent (energy-only and label-free data are valid);
    labels may also be missing on some structures (mixed data), so one frame
    without the key is not an error, only a window without it.
    """

    def __init__(self, path: str, fmt: str, energy_key: str, forces_key: str) -> None:
        self.path, self.fmt, self.ek, self.fk = path, fmt, energy_key, forces_key
        self.seen_e = energy_key == "energy"
        self.seen_f = forces_key == "forces"
        self.first: tuple[Any, Mapping[str, Any] | None] | None = None
        self.count = 0

    def __call__(self, atoms: Any, extra: Mapping[str, Any] | None = None) -> None:
        if self.seen_e and self.seen_f:
            return
        if self.first is None:
            self.first = (atoms, extra)
        self.seen_e = self.seen_e or lookup(atoms, self.ek, False, extra) is not _MISSING
        self.seen_f = self.seen_f or lookup(atoms, self.fk, True, extra) is not _MISSING
        self.count += 1
        if self.count >= KEY_CHECK_WINDOW:
            self.finish()

    def finish(self) -> None:
        if self.first is None or (self.seen_e and self.seen_f):
            return
        check_requested_keys(
            self.path, self.fmt, self.first[0], self.ek if not self.seen_e else "energy",
            self.fk if not self.seen_f else "forces", self.first[1], self.count,
        )
