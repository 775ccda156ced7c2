"""Any supported dataset file -> one ragged HDF5 store (``empp-ff data convert``).

Kept apart from :mod:`empp_ff.data.store` so that the store (a file format) does
not depend on the readers, while the store reader depends on the store.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os

from empp_ff.data import readers
from empp_ff.data.readers._common import check_exists
from empp_ff.data.store import write_store

__all__ = ["convert", "sha256_file"]


def sha256_file(path: str | os.PathLike, block: int = 1 << 20) -> str:
    """Streamed sha256 of a file (constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


def convert(
    in_path: str | os.PathLike,
    out_path: str | os.PathLike,
    fmt: str | None = None,
    energy_key: str = "energy",
    forces_key: str = "forces",
    progress: bool = True,
    chunk: int = 4096,
    drop_nonfinite: bool = False,
    allow_missing_labels: bool = False,
) -> str:
    """Convert any supported dataset to a store; returns the store path.

    Provenance records the input path, its format, its sha256, the keys and the
    validation options used, the empp_ff version and the time, so a store can be
    traced to its source. The store's attributes ``n_dropped_nonfinite`` and
    ``n_missing_labels_kept`` count what the validation dropped or kept unlabelled.
    """
    from empp_ff import __version__
    from empp_ff.data.validation import ValidationReport

    src = check_exists(in_path)
    fmt = fmt or readers.detect_format(src)
    prov = {
        "input": os.path.abspath(src),
        "format": fmt,
        "sha256": sha256_file(src),
        "size": os.stat(src).st_size,
        "mtime_ns": os.stat(src).st_mtime_ns,
        "energy_key": energy_key,
        "forces_key": forces_key,
        "drop_nonfinite": bool(drop_nonfinite),
        "allow_missing_labels": bool(allow_missing_labels),
        "empp_ff_version": __version__,
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(),
    }
    # Looked up on the module at call time (benchmarks/geom_scale.py wraps it to sample memory).
    report = ValidationReport()
    structures = readers.read_structures(src, fmt=fmt, energy_key=energy_key, forces_key=forces_key,
                                         drop_nonfinite=drop_nonfinite, allow_missing_labels=allow_missing_labels,
                                         report=report)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc=f"convert {os.path.basename(src)}", unit="struct")
    try:
        return write_store(structures, out_path, prov, chunk=chunk, source=prov["input"], source_format=fmt,
                           progress=bar, report=report)
    finally:
        if bar is not None:
            bar.close()
