"""GEOM msgpack reader: the published ``drugs_crude.msgpack`` / ``qm9_crude.msgpack``
(and ``*_featurized.msgpack``) files.

Layout (Axelrod & Gomez-Bombarelli, GEOM): the file is a *stream* of msgpack
objects ("chunks"), each a map ``SMILES -> molecule``; a molecule is a map with
``"conformers"``: a list of maps holding ``"xyz"`` (rows ``[Z, x, y, z]``, Å) and
``"totalenergy"`` (Hartree, GFN2-xTB), plus keys this reader ignores
(``boltzmannweight``, ``relativeenergy``, ``geom_id``, ...; molecule-level
``totalconfs``, ``charge``, ...).

Memory is constant in the file size: the stream is walked with
``msgpack.Unpacker`` one *molecule* at a time (``read_map_header`` on each
chunk, then one ``unpack`` per SMILES key / molecule value), so neither the file
nor a whole chunk is ever held in memory; the peak is one molecule's conformers.

Units: positions Å (as stored); ``totalenergy`` Hartree -> eV
(``ase.units.Hartree``); ``relativeenergy`` kcal/mol -> eV. No forces.
``Structure.name`` is the SMILES. A conformer without the energy key yields
``energy=None`` (e.g. featurized files that carry geometry only).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from empp_ff.data.readers._common import KCAL_MOL, check_exists, missing_keys_error
from empp_ff.data.structure import Structure

__all__ = ["read_geom_msgpack", "ENERGY_KEYS", "import_msgpack"]

_HARTREE: float | None = None

#: energy keys of a GEOM conformer -> their unit in eV ("energy" is an alias of
#: "totalenergy" so the package-wide default ``energy_key="energy"`` works).
ENERGY_KEYS: dict[str, str] = {
    "energy": "totalenergy", "totalenergy": "totalenergy", "relativeenergy": "relativeenergy",
}

# Cap on one buffered msgpack object (one molecule, see module doc), not an allocation.
_MAX_BUFFER = 1 << 30  # 1 GiB


def import_msgpack() -> Any:
    """Import msgpack or raise an ImportError that says how to install it."""
    try:
        import msgpack
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "Reading GEOM .msgpack files needs the 'msgpack' package: pip install 'empp-ff[geom]' "
            "(or pip install 'msgpack>=1.0')."
        ) from exc
    return msgpack


def _energy_factor(key: str) -> float:
    global _HARTREE
    if key == "relativeenergy":
        return KCAL_MOL
    if _HARTREE is None:
        from ase import units

        _HARTREE = float(units.Hartree)
    return _HARTREE


def _conformer(path: str, smiles: str, k: int, conf: Any, ekey: str, efac: float) -> Structure:
    if not isinstance(conf, dict) or "xyz" not in conf:
        found = sorted(conf) if isinstance(conf, dict) else [type(conf).__name__]
        raise missing_keys_error(f"{path}:{smiles}[conformer {k}]", "geom_msgpack", found, ["xyz", f"optional: {ekey}"])
    xyz = np.asarray(conf["xyz"], dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 4:
        raise ValueError(
            f"{path!r}: molecule {smiles!r} conformer {k}: 'xyz' must be rows [Z, x, y, z], got shape {xyz.shape}"
        )
    z = np.rint(xyz[:, 0]).astype(np.int64)
    e = conf.get(ekey)
    return Structure(
        atomic_numbers=z,
        positions=xyz[:, 1:],
        energy=None if e is None else float(e) * efac,
        name=smiles,
    )


def _iter(path: str, energy_key: str) -> Iterator[Structure]:
    msgpack = import_msgpack()
    if energy_key not in ENERGY_KEYS:
        raise ValueError(
            f"{path!r} (format 'geom_msgpack'): unsupported energy_key {energy_key!r}; expected one of "
            f"{sorted(ENERGY_KEYS)} ('energy' = 'totalenergy', Hartree)."
        )
    ekey = ENERGY_KEYS[energy_key]
    efac = _energy_factor(ekey)
    n_chunks = 0
    with open(path, "rb") as fh:
        unpacker = msgpack.Unpacker(fh, raw=False, max_buffer_size=_MAX_BUFFER, strict_map_key=False)
        while True:
            try:
                n_mols = unpacker.read_map_header()
            except msgpack.OutOfData:
                break
            except ValueError:  # the next object is not a map: name what it is
                obj = unpacker.unpack()
                raise ValueError(
                    f"{path!r} (format 'geom_msgpack'): chunk {n_chunks} is a {type(obj).__name__}, expected a map "
                    "SMILES -> molecule {'conformers': [{'xyz': [[Z, x, y, z], ...], 'totalenergy': ...}, ...]}."
                ) from None
            for _ in range(n_mols):
                smiles = unpacker.unpack()
                mol = unpacker.unpack()
                smiles = smiles.decode() if isinstance(smiles, bytes) else str(smiles)
                if not isinstance(mol, dict) or "conformers" not in mol:
                    found = sorted(map(str, mol)) if isinstance(mol, dict) else [type(mol).__name__]
                    raise missing_keys_error(f"{path}:{smiles}", "geom_msgpack", found, ["conformers"])
                for k, conf in enumerate(mol["conformers"]):
                    yield _conformer(path, smiles, k, conf, ekey, efac)
                del mol
            n_chunks += 1
    if n_chunks == 0:
        raise ValueError(f"{path!r} (format 'geom_msgpack'): empty file, no msgpack chunks found")


def read_geom_msgpack(
    path: str | os.PathLike, energy_key: str = "energy", forces_key: str = "forces", **_: object
) -> Iterator[Structure]:
    """Lazily yield every conformer of every molecule, in file order, in eV/Å.

    ``energy_key``: ``"energy"``/``"totalenergy"`` (Hartree -> eV, default) or
    ``"relativeenergy"`` (kcal/mol -> eV). ``forces_key`` is ignored (GEOM has none).
    """
    p = check_exists(path)
    import_msgpack()  # fail at call time, not at first next()
    return _iter(p, energy_key)
