"""Turn an ``ase.Atoms`` into a Structure, looking labels up where ASE may put them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

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
    path: str, fmt: str, atoms: Any, energy_key: str, forces_key: str, extra: Mapping[str, Any] | None = None
) -> None:
    """Non-default keys the user asked for must exist in the first frame (typos fail loudly).

    The default keys may be absent: energy-only and label-free data are valid.
    """
    wanted = []
    if energy_key != "energy" and lookup(atoms, energy_key, False, extra) is _MISSING:
        wanted.append(f"energy_key={energy_key!r}")
    if forces_key != "forces" and lookup(atoms, forces_key, True, extra) is _MISSING:
        wanted.append(f"forces_key={forces_key!r}")
    if wanted:
        raise ValueError(
            f"{path!r} (format {fmt!r}): first structure has no {', '.join(wanted)}. "
            f"Found keys {available_keys(atoms, extra)}; expected the requested key(s)."
        )
