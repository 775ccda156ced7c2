"""The one on-disk dataset format training reads: a ragged, chunked HDF5 store.

Why: GEOM-Drug is ~37 M conformers, so conversion streams in constant memory and
training reads one structure's slice at a time, never the whole file.

Layout (format version 1)::

    offsets        int64   [n+1]        structure i = atoms offsets[i]:offsets[i+1]
    atomic_numbers int64   [total_atoms]
    positions      float64 [total_atoms, 3]   Å
    energy         float64 [n]                eV, NaN where missing
    forces         float64 [total_atoms, 3]   eV/Å, NaN rows where missing (only if any has forces)
    cell           float64 [n, 3, 3]          zeros where none
    pbc            bool    [n, 3]
    names          vlen str [n]               (only if any structure has a name)
    attrs: empp_ff_store=1, units_*, source, source_format, created, provenance (JSON),
           has_energy, has_forces, n_structures, n_atoms_total, species
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Iterable, Iterator
from typing import Any

import h5py
import numpy as np

from empp_ff._atomic import atomic_path
from empp_ff.data.fileio import DataError, open_hdf5
from empp_ff.data.structure import Structure

__all__ = ["STORE_VERSION", "write_store", "StructureStore"]

STORE_VERSION = 1
_ATOM_CHUNK = 8192  # HDF5 chunk rows for per-atom datasets (~200 kB for positions)
_STRUCT_CHUNK = 4096
_CACHE_BYTES = 50 * 1024**2


class _Writer:
    """Buffers structures and appends them to resizable datasets."""

    def __init__(self, f: h5py.File, compression: str | None, target: str = "") -> None:
        self.f = f
        self.target = target or f.filename
        self.comp = compression
        self.n = 0
        self.n_atoms = 0
        self.has_energy = False
        self.has_forces = False
        self.species: set[int] = set()
        f.create_dataset("offsets", data=np.zeros(1, np.int64), maxshape=(None,), chunks=(_STRUCT_CHUNK,))
        self._mk("atomic_numbers", (0,), np.int64, (_ATOM_CHUNK,))
        self._mk("positions", (0, 3), np.float64, (_ATOM_CHUNK, 3))
        self._mk("energy", (0,), np.float64, (_STRUCT_CHUNK,), fill=np.nan)
        self._mk("cell", (0, 3, 3), np.float64, (_STRUCT_CHUNK // 8, 3, 3))
        self._mk("pbc", (0, 3), np.bool_, (_STRUCT_CHUNK, 3))

    def _mk(self, name: str, shape: tuple, dtype: Any, chunks: tuple, fill: Any = None) -> h5py.Dataset:
        maxshape = (None,) + tuple(shape[1:])
        kw: dict[str, Any] = {"fillvalue": fill} if fill is not None else {}
        return self.f.create_dataset(
            name, shape=shape, maxshape=maxshape, dtype=dtype, chunks=chunks, compression=self.comp, **kw
        )

    @staticmethod
    def _append(ds: h5py.Dataset, start: int, data: np.ndarray) -> None:
        ds.resize(start + data.shape[0], axis=0)
        ds[start : start + data.shape[0]] = data

    def _check_finite(self, buf: list[Structure], positions: np.ndarray, energies: np.ndarray) -> None:
        """The store's invariant: values are finite, NaN only marks an absent label."""
        if np.isfinite(positions).all() and not np.isinf(energies).any() and not any(
            (s.energy is not None and np.isnan(s.energy))
            or (s.forces is not None and not np.isfinite(s.forces).all())
            or (s.cell is not None and not np.isfinite(s.cell).all())
            for s in buf
        ):
            return
        from empp_ff.data.validation import nonfinite_fields

        for k, s in enumerate(buf):
            bad = nonfinite_fields(s)
            if bad:
                raise DataError(
                    f"{self.target}: structure {self.n + k}" + (f" ({s.name!r})" if s.name else "")
                    + f": non-finite (NaN/inf) {'; '.join(bad)}; a store holds finite values only"
                )

    def flush(self, buf: list[Structure]) -> None:
        if not buf:
            return
        f = self.f
        counts = np.array([s.n_atoms for s in buf], dtype=np.int64)
        offs = self.n_atoms + np.cumsum(counts)
        z = np.concatenate([s.atomic_numbers for s in buf])
        self.species.update(np.unique(z).tolist())
        a0, s0 = self.n_atoms, self.n
        self._append(f["offsets"], s0 + 1, offs)
        positions = np.concatenate([s.positions for s in buf])
        e = np.array([np.nan if s.energy is None else s.energy for s in buf], dtype=np.float64)
        self._check_finite(buf, positions, e)
        self._append(f["atomic_numbers"], a0, z)
        self._append(f["positions"], a0, positions)
        self.has_energy |= bool(np.isfinite(e).any())
        self._append(f["energy"], s0, e)
        self._append(
            f["cell"], s0, np.stack([np.zeros((3, 3)) if s.cell is None else s.cell for s in buf])
        )
        self._append(f["pbc"], s0, np.stack([s.pbc for s in buf]))
        n_new = a0 + int(counts.sum())
        if any(s.forces is not None for s in buf):
            if "forces" not in f:  # created late: earlier rows read back as the NaN fill value
                self._mk("forces", (a0, 3), np.float64, (_ATOM_CHUNK, 3), fill=np.nan)
            self.has_forces = True
            frc = np.concatenate([np.full((s.n_atoms, 3), np.nan) if s.forces is None else s.forces for s in buf])
            self._append(f["forces"], a0, frc)
        elif "forces" in f:
            f["forces"].resize(n_new, axis=0)
        if any(s.name for s in buf):
            if "names" not in f:  # unwritten vlen strings read back as ''
                self._mk("names", (s0,), h5py.string_dtype(), (_STRUCT_CHUNK,))
            self._append(f["names"], s0, np.array([s.name for s in buf], dtype=object))
        elif "names" in f:
            f["names"].resize(s0 + len(buf), axis=0)
        self.n += len(buf)
        self.n_atoms = n_new


def write_store(
    structures: Iterable[Structure],
    out_path: str | os.PathLike,
    provenance: dict | None = None,
    chunk: int = 4096,
    source: str = "",
    source_format: str = "",
    compression: str | None = None,
    progress: Any = None,
    report: Any = None,
) -> str:
    """Stream ``structures`` into a new store at ``out_path`` (atomic; constant memory).

    Buffers ``chunk`` structures at a time. Writes to a temporary file in the same
    directory and ``os.replace``s it at the end, so a crash never leaves a
    half-written store under ``out_path``. ``progress`` is an optional tqdm-like
    object with ``update(n)``. ``report``: the ``ValidationReport`` of the reader
    feeding ``structures``; its counts are stored as attributes. Returns ``out_path``.
    """
    out = os.fspath(out_path)
    with atomic_path(out) as tmp:
        with h5py.File(tmp, "w") as f:
            w = _Writer(f, compression, out)
            buf: list[Structure] = []
            for s in structures:
                if not isinstance(s, Structure):
                    raise TypeError(f"write_store expects Structure objects, got {type(s).__name__}")
                buf.append(s)
                if len(buf) >= chunk:
                    w.flush(buf)
                    if progress is not None:
                        progress.update(len(buf))
                    buf = []
            w.flush(buf)
            if progress is not None:
                progress.update(len(buf))
            a = f.attrs
            a["empp_ff_store"] = STORE_VERSION
            a["units_energy"] = "eV"
            a["units_length"] = "Angstrom"
            a["units_forces"] = "eV/Angstrom"
            a["source"] = str(source or (provenance or {}).get("input", ""))
            a["source_format"] = str(source_format or (provenance or {}).get("format", ""))
            a["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat()
            a["provenance"] = json.dumps(provenance or {}, default=str)
            a["has_energy"] = w.has_energy
            a["has_forces"] = w.has_forces
            a["n_structures"] = w.n
            a["n_atoms_total"] = w.n_atoms
            a["species"] = np.array(sorted(w.species), dtype=np.int64)
            if report is not None:  # what the data-boundary validation dropped or kept unlabelled
                a["n_dropped_nonfinite"] = int(report.dropped_nonfinite)
                a["n_missing_labels_kept"] = int(report.missing_labels_kept)
    return out


class StructureStore:
    """Lazy random access to a store: ``store[i]`` reads only structure i's slice.

    The h5py handle is opened on first access and re-opened in a forked child
    (DataLoader workers), because HDF5 handles must not be shared across fork.
    Stores smaller than ``cache_bytes`` are read into RAM once for speed.
    """

    def __init__(self, path: str | os.PathLike, cache_bytes: int = _CACHE_BYTES) -> None:
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"No such store: {self.path!r}")
        self._cache_bytes = cache_bytes
        self._f: h5py.File | None = None
        self._pid: int | None = None
        self._offsets: np.ndarray | None = None
        self._attrs: dict[str, Any] | None = None
        self._cache: dict[str, np.ndarray] | None = None
        self._ds: dict[str, h5py.Dataset] = {}
        self._small = os.path.getsize(self.path) <= cache_bytes
        with open_hdf5(self.path) as f:
            if "empp_ff_store" not in f.attrs:
                raise ValueError(
                    f"{self.path!r} is not an empp-ff store (no 'empp_ff_store' attribute; found attributes "
                    f"{sorted(f.attrs)}). Convert it first with empp_ff.data.conversion.convert()."
                )
            v = int(f.attrs["empp_ff_store"])
            if v != STORE_VERSION:
                raise ValueError(f"{self.path!r}: store format version {v} is not supported (expected {STORE_VERSION})")

    # --- handle management -------------------------------------------------
    @property
    def _h5(self) -> h5py.File:
        if self._f is None or self._pid != os.getpid():
            # After fork the inherited handle is unusable; drop it without closing.
            self._f = h5py.File(self.path, "r")
            self._pid = os.getpid()
            # Dataset objects cached once: a group lookup costs more than a small read.
            self._ds = {k: v for k, v in self._f.items() if isinstance(v, h5py.Dataset)}
        return self._f

    def close(self) -> None:
        if self._f is not None and self._pid == os.getpid():
            self._f.close()
        self._f = None
        self._pid = None
        self._ds = {}

    def __enter__(self) -> StructureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __getstate__(self) -> dict[str, Any]:
        # Picklable for spawn-started workers: never ship the open handle or cache.
        st = self.__dict__.copy()
        st.update(_f=None, _pid=None, _cache=None, _ds={})
        return st

    # --- metadata ----------------------------------------------------------
    @property
    def attrs(self) -> dict[str, Any]:
        if self._attrs is None:
            out = {}
            for k, v in self._h5.attrs.items():
                if isinstance(v, bytes):
                    v = v.decode()
                elif isinstance(v, np.generic):
                    v = v.item()
                out[k] = v
            self._attrs = out
        return self._attrs

    @property
    def offsets(self) -> np.ndarray:
        if self._offsets is None:
            self._offsets = np.asarray(self._h5["offsets"][()], dtype=np.int64)
        return self._offsets

    @property
    def n_atoms(self) -> np.ndarray:
        """Atoms per structure, int64 [n]."""
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    @property
    def has_energy(self) -> bool:
        return bool(self.attrs.get("has_energy", False))

    @property
    def has_forces(self) -> bool:
        return bool(self.attrs.get("has_forces", False)) and "forces" in self._h5

    @property
    def provenance(self) -> dict:
        return json.loads(self.attrs.get("provenance", "{}"))

    def energies(self) -> np.ndarray:
        """All total energies, float64 [n] (NaN where missing). One float per structure."""
        return np.asarray(self._h5["energy"][()], dtype=np.float64)

    def species(self) -> np.ndarray:
        """Sorted unique atomic numbers (cached at write time; else a chunked pass)."""
        sp = self.attrs.get("species")
        if sp is not None:
            return np.asarray(sp, dtype=np.int64)
        ds, seen = self._h5["atomic_numbers"], set()
        for a in range(0, ds.shape[0], 1 << 20):
            seen.update(np.unique(ds[a : a + (1 << 20)]).tolist())
        return np.array(sorted(seen), dtype=np.int64)

    # --- data ----------------------------------------------------------------
    def _source(self) -> Any:
        _ = self._h5  # (re)opens the handle after fork and fills self._ds
        if self._small:
            if self._cache is None:
                self._cache = {k: d[()] for k, d in self._ds.items() if k != "offsets"}
            return self._cache
        return self._ds

    def __getitem__(self, i: int) -> Structure:
        n = len(self)
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"structure index {i} out of range for store of {n}")
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        src = self._source()
        e = float(src["energy"][i])
        forces = None
        if "forces" in src:
            fr = np.asarray(src["forces"][a:b], dtype=np.float64)
            forces = None if np.isnan(fr).any() else fr  # NaN rows mark "no forces"
        pbc = np.asarray(src["pbc"][i], dtype=np.bool_)
        cell = np.asarray(src["cell"][i], dtype=np.float64)
        name = ""
        if "names" in src:
            nm = src["names"][i]
            name = nm.decode() if isinstance(nm, bytes) else str(nm)
        return Structure(
            atomic_numbers=np.asarray(src["atomic_numbers"][a:b], dtype=np.int64),
            positions=np.asarray(src["positions"][a:b], dtype=np.float64),
            energy=None if np.isnan(e) else e,
            forces=forces,
            cell=cell if (pbc.any() or cell.any()) else None,
            pbc=pbc,
            name=name,
        )

    def get_atomic_numbers(self, i: int) -> np.ndarray:
        """Only structure i's atomic numbers (cheap: for composition statistics)."""
        i = int(i) + (len(self) if int(i) < 0 else 0)
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return np.asarray(self._source()["atomic_numbers"][a:b], dtype=np.int64)

    def __iter__(self) -> Iterator[Structure]:
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return f"StructureStore({self.path!r}, n={len(self)})"
