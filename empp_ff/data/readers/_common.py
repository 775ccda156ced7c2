"""Shared helpers for readers: unit factors, error messages, path checks."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from ase import units

from empp_ff.data.fileio import open_hdf5, open_npz  # noqa: F401  (re-exported for the readers)

__all__ = ["KCAL_MOL", "check_exists", "missing_keys_error", "energy_unit_factor", "length_unit_factor",
           "open_npz", "open_hdf5"]

#: 1 kcal/mol in eV (MD17 and rMD17 are in kcal/mol and kcal/mol/Å).
KCAL_MOL: float = units.kcal / units.mol

_ENERGY_UNITS = {
    "ev": 1.0,
    "kcal/mol": KCAL_MOL,
    "kcal mol-1": KCAL_MOL,
    "kj/mol": units.kJ / units.mol,
    "hartree": units.Hartree,
    "ha": units.Hartree,
    "eh": units.Hartree,
    "au": units.Hartree,
    "mev": 1e-3,
    "ry": units.Rydberg,
    "rydberg": units.Rydberg,
}
_LENGTH_UNITS = {
    "angstrom": 1.0,
    "ang": 1.0,
    "å": 1.0,
    "a": 1.0,
    "bohr": units.Bohr,
    "a0": units.Bohr,
    "nm": 10.0,
}


def check_exists(path: str | os.PathLike) -> str:
    """Return ``str(path)`` or raise FileNotFoundError naming it."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"No such dataset file: {p!r}")
    return p


def missing_keys_error(path: str, fmt: str, found: Iterable[str], expected: Iterable[str]) -> ValueError:
    """A ValueError that names the file, the keys found and what was expected."""
    return ValueError(
        f"{path!r} (format {fmt!r}): missing required keys. Found keys {sorted(map(str, found))}; "
        f"expected {list(expected)}."
    )


def _norm(u: str) -> str:
    return u.strip().lower().replace("angstroms", "angstrom").replace("electronvolt", "ev")


def energy_unit_factor(unit: str, what: str = "energy") -> float:
    """eV per ``unit`` (e.g. 'kcal/mol' -> 0.04336...). Unknown unit -> ValueError."""
    key = _norm(unit)
    if key not in _ENERGY_UNITS:
        raise ValueError(f"Unknown {what} unit {unit!r}; known: {sorted(_ENERGY_UNITS)}")
    return _ENERGY_UNITS[key]


def length_unit_factor(unit: str) -> float:
    """Å per ``unit``. Unknown unit -> ValueError."""
    key = _norm(unit)
    if key not in _LENGTH_UNITS:
        raise ValueError(f"Unknown length unit {unit!r}; known: {sorted(_LENGTH_UNITS)}")
    return _LENGTH_UNITS[key]


def parse_units_attr(text: str | bytes | None) -> tuple[float, float, float]:
    """Parse a ``units`` attribute into (energy, length, force) factors to eV, Å, eV/Å.

    Accepts a bare energy unit (``"kcal/mol"``, ``"Hartree"``) or the GEOM
    look-alike's ``"positions: Angstrom; energy: eV; forces: eV/Angstrom"``.
    Missing parts default to eV / Å; forces default to energy/length.
    """
    if text is None:
        return 1.0, 1.0, 1.0
    if isinstance(text, bytes):
        text = text.decode()
    text = str(text).strip()
    parts: dict[str, str] = {}
    if ":" in text or "=" in text:
        for item in re.split(r"[;,]", text):
            if not item.strip():
                continue
            k, _, v = item.replace("=", ":").partition(":")
            parts[k.strip().lower()] = v.strip()
    elif text:
        parts["energy"] = text
    e = energy_unit_factor(parts.get("energy", parts.get("energies", "eV")))
    length = length_unit_factor(parts.get("positions", parts.get("length", parts.get("coordinates", "Angstrom"))))
    fu = parts.get("forces", parts.get("force"))
    if fu is None:
        f = e / length
    else:
        eu, _, lu = fu.partition("/")
        f = energy_unit_factor(eu, "force energy") / (length_unit_factor(lu) if lu else 1.0)
    return e, length, f
