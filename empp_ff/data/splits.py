"""Train/val/test splits: seeded, reproducible, saved as JSON next to the run.

MD17 protocol: ``make_splits(n, 950, 50, seed=1)`` -> 950 train, 50 val, rest test.
"""

from __future__ import annotations

import json
import os

import numpy as np

from empp_ff._atomic import atomic_path

__all__ = ["make_splits", "save_splits", "load_splits"]

_NOT_INDICES = ("seed", "n", "fingerprint")


def _size(x: int | float | None, n: int, what: str) -> int:
    """A count, or a fraction in (0, 1) of n (rounded)."""
    if x is None:
        return 0
    if isinstance(x, (float, np.floating)):
        if 0 < x < 1:
            return int(round(float(x) * n))
        if not float(x).is_integer():
            raise ValueError(f"{what}={x}: use a fraction in (0, 1) or an integer count")
    k = int(x)
    if k < 0:
        raise ValueError(f"{what}={x} must be >= 0")
    return k


def make_splits(
    n: int,
    n_train: int | float | None,
    n_val: int | float,
    n_test: int | float | None = None,
    seed: int = 1,
) -> dict[str, np.ndarray]:
    """Disjoint random index sets from ``numpy.random.default_rng(seed).permutation(n)``.

    Sizes are ints (counts) or fractions in (0, 1) of ``n``. With ``n_test=None``
    everything not in train/val goes to test; with ``n_train=None`` everything not in
    val/test trains. Same (n, sizes, seed) -> same split.
    """
    n = int(n)
    va = _size(n_val, n, "n_val")
    if n_train is None:  # training takes the rest
        te = _size(n_test, n, "n_test")
        tr = max(n - va - te, 0)
    else:
        tr = _size(n_train, n, "n_train")
        te = n - tr - va if n_test is None else _size(n_test, n, "n_test")
    if tr + va + te > n or te < 0:
        raise ValueError(
            f"split sizes exceed the dataset: n_train={tr} + n_val={va} + "
            f"n_test={max(te, 0) if n_test is not None else 'rest'} > n={n}"
        )
    perm = np.random.default_rng(seed).permutation(n).astype(np.int64)
    return {"train": perm[:tr], "val": perm[tr : tr + va], "test": perm[tr + va : tr + va + te]}


def save_splits(path: str | os.PathLike, splits: dict[str, np.ndarray], seed: int | None = None, n: int | None = None,
                fingerprint: dict | None = None) -> None:
    """Write ``splits.json``: {"train": [...], "val": [...], "test": [...], "seed": s, "n": n} (atomically),
    plus ``fingerprint``: what the splits were made from (source data, split config)."""
    doc: dict = {k: [int(i) for i in np.asarray(v).tolist()] for k, v in splits.items() if k not in _NOT_INDICES}
    doc["seed"] = None if seed is None else int(seed)
    doc["n"] = None if n is None else int(n)
    if fingerprint is not None:
        doc["fingerprint"] = fingerprint
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            json.dump(doc, fh)


def load_splits(path: str | os.PathLike, n: int | None = None) -> dict[str, np.ndarray]:
    """Read ``splits.json`` into int64 index arrays {"train", "val", "test"}.

    With ``n`` given, checks the file was made for a dataset of that size, so a
    splits file is never silently reused on a different dataset.
    """
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"No such splits file: {p!r}")
    with open(p) as fh:
        doc = json.load(fh)
    missing = [k for k in ("train", "val", "test") if k not in doc]
    if missing:
        raise ValueError(f"{p!r}: splits file lacks {missing}; found keys {sorted(doc)}")
    out = {k: np.asarray(v, dtype=np.int64).reshape(-1) for k, v in doc.items() if k not in _NOT_INDICES}
    if n is not None:
        stored = doc.get("n")
        top = max((int(v.max()) for v in out.values() if v.size), default=-1)
        if (stored is not None and int(stored) != int(n)) or top >= n:
            raise ValueError(f"{p!r} was made for n={stored} (max index {top}) but the dataset has n={n}")
    return out
