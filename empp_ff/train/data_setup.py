"""From a data config to a store, splits and statistics for training.

Any supported input format is converted once into the ragged HDF5 store
(``RUN_DIR/data/<name>.h5``), which training then reads lazily. Splits are
saved in the run directory and reused on resume, so a resumed run sees exactly
the same train/val/test structures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np

from empp_ff.train.config import Config, ConfigError
from empp_ff.train.io import write_json
from empp_ff.train.rundir.derived import conversion_options, splits_fingerprint, stale_splits, stale_store


@dataclass
class PreparedData:
    store: object  # empp_ff.data.store.StructureStore
    store_path: Path
    source_path: Path
    splits: Dict[str, np.ndarray]
    species: List[int]
    e0s: Dict[int, float]
    statistics: Dict[str, float]


def resolve_data_path(cfg: Config) -> Path:
    if cfg.data.path:
        path = Path(cfg.data.path).expanduser()
        if not path.exists():
            raise ConfigError(f"data.path: file not found: {path}")
        return path.resolve()
    from empp_ff.data.demo import demo_data_path

    return demo_data_path()


def with_recorded_data_path(cfg: Config) -> Config:
    """``cfg`` with ``data.path`` filled in (the bundled demo file when empty), so that
    config.yaml and the checkpoints record which file was used."""
    import dataclasses

    if cfg.data.path:
        return cfg
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, path=str(resolve_data_path(cfg))))


def open_store(source: Path, run_dir: Path, cfg: Config, log: Callable[[str], None], resuming: bool = False):
    """The store training reads: ``source`` itself, or its conversion in ``RUN_DIR/data``
    (rebuilt when stale; refused when stale and a checkpoint depends on it)."""
    from empp_ff.data.conversion import convert
    from empp_ff.data.readers import detect_format
    from empp_ff.data.store import StructureStore

    fmt = cfg.data.format or detect_format(source)
    if fmt == "store":
        return StructureStore(source), source
    target = run_dir / "data" / (source.stem + ".h5")
    options = conversion_options(cfg, fmt)
    reason = None
    if target.exists():  # conversion is atomic: an existing file is complete
        with StructureStore(target) as existing:
            reason = stale_store(existing.provenance, source, options)
        if reason and resuming:
            raise ConfigError(f"{target}: {reason}. This run was trained on the data as converted then; "
                              "restore the data file, or start a fresh run_dir.")
        if reason:
            log(f"{target} is stale ({reason}): converting again")
    if not target.exists() or reason:
        log(f"converting {source} ({fmt}) -> {target}")
        convert(source, target, fmt=fmt, energy_key=cfg.data.energy_key, forces_key=cfg.data.forces_key,
                drop_nonfinite=cfg.data.drop_nonfinite, allow_missing_labels=cfg.data.allow_missing_labels)
    store = StructureStore(target)
    _report_validation(store, source, log)
    return store, target


def _read_store(source: Path, run_dir: Path, cfg: Config):
    """Ranks other than 0: the store rank 0 has prepared."""
    from empp_ff.data.readers import detect_format
    from empp_ff.data.store import StructureStore

    if (cfg.data.format or detect_format(source)) == "store":
        return StructureStore(source), source
    target = run_dir / "data" / (source.stem + ".h5")
    return StructureStore(target), target


def _report_validation(store, source: Path, log: Callable[[str], None]) -> None:
    dropped = int(store.attrs.get("n_dropped_nonfinite", 0))
    if dropped:
        log(f"data.drop_nonfinite: dropped {dropped} frame(s) of {source} holding NaN/inf values")
    kept = int(store.attrs.get("n_missing_labels_kept", 0))
    if kept:
        log(f"data.allow_missing_labels: {kept} structure(s) of {source} kept without the labels others carry")


def _splits(cfg: Config, run_dir: Path, source: Path, n: int, log: Callable[[str], None], write: bool,
            resuming: bool) -> Dict[str, np.ndarray]:
    """The run's splits.json: reused while current, else made anew (refused when resuming)."""
    from empp_ff.data.splits import load_splits, make_splits, save_splits

    path = run_dir / "splits.json"
    seed = cfg.seed if cfg.data.split_seed is None else cfg.data.split_seed
    split_config = {"n_train": cfg.data.n_train, "n_val": cfg.data.n_val, "n_test": cfg.data.n_test, "seed": seed}
    reason = stale_splits(path, source, n, split_config) if path.exists() and write else None
    legacy = reason is not None and "older empp-ff" in reason
    if path.exists() and (reason is None or (resuming and legacy)):
        splits = load_splits(path)
        used = sum(len(v) for k, v in splits.items() if k in ("train", "val", "test"))
        if max(int(np.max(v)) for v in splits.values() if len(v)) >= n or used > n:
            raise ConfigError(f"{path} does not fit the data ({n} structures): use a fresh run_dir")
        return splits
    if reason and resuming:
        raise ConfigError(f"{path} was not made for this data ({reason}); this run was trained on those "
                          "splits: restore the data file, or start a fresh run_dir")
    if reason:
        log(f"{path} is stale ({reason}): making new splits")
    try:
        splits = make_splits(n, cfg.data.n_train, cfg.data.n_val, cfg.data.n_test, seed=seed)
    except ValueError as exc:
        raise ConfigError(f"data split: {exc}") from exc
    if write:
        save_splits(path, splits, seed=seed, n=n, fingerprint=splits_fingerprint(source, n, split_config))
    return splits


def prepare_data(cfg: Config, run_dir: Path, log: Callable[[str], None], write: bool = True,
                 resuming: bool = False) -> PreparedData:
    from empp_ff.data.statistics import compute_statistics, fit_e0s

    source = resolve_data_path(cfg)
    store, store_path = open_store(source, run_dir, cfg, log, resuming) if write else _read_store(source, run_dir, cfg)
    n = len(store)
    if n == 0:
        raise ConfigError(f"{store_path} holds no structures: nothing to train on (an empty corpus or data file)")
    splits = _splits(cfg, run_dir, source, n, log, write, resuming)
    train_idx = np.asarray(splits["train"])
    species = [int(z) for z in store.species()]

    if cfg.task == "pretrain" or not store.has_energy:
        e0s = {z: 0.0 for z in species}
    elif isinstance(cfg.model.e0s, dict):
        missing = sorted(set(species) - set(int(k) for k in cfg.model.e0s))
        if missing:
            raise ConfigError(f"model.e0s has no reference energy for atomic numbers {missing}")
        e0s = {int(k): float(v) for k, v in cfg.model.e0s.items() if int(k) in species}
    else:
        e0s = {int(k): float(v) for k, v in fit_e0s(store, train_idx, species).items()}
    stats = compute_statistics(store, train_idx, e0s, cfg.model.r_max)
    stats = {k: (float(v) if v is not None else float("nan")) for k, v in stats.items()}
    if write:
        write_json(run_dir / "statistics.json", {
            "n_structures": n,
            "split_sizes": {k: int(len(v)) for k, v in splits.items() if hasattr(v, "__len__")},
            "species": species,
            "e0s": {str(k): v for k, v in e0s.items()},
            **{k: (v if math.isfinite(v) else None) for k, v in stats.items()},
        })
    return PreparedData(store, store_path, source, splits, species, e0s, stats)


def finite(value: float, default: float) -> float:
    return float(value) if value is not None and math.isfinite(value) and value != 0 else default
