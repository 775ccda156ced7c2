"""Typed, validated training configuration.

A config is a tree of dataclasses built from a YAML mapping. Everything is
checked before any work starts: an unknown or misspelled key is an error that
names the full dotted key and suggests the nearest valid one, and a value of the
wrong type names the key, the expected type and the value given.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import yaml

from empp_ff.denoise.config import DenoiseConfig
from empp_ff.empp.config import EMPPConfig
from empp_ff.empp.pretrained import initial_weights
from empp_ff.model.spec import Architecture
from empp_ff.train.demo_config import DEMO_CONFIG, adjust_demo  # noqa: F401 (DEMO_CONFIG: re-exported)


class ConfigError(ValueError):
    """A configuration problem, reported before any training work."""


Number = Union[int, float]


@dataclass
class DataConfig:
    path: str = ""  # empty: the bundled demo aspirin set
    format: Optional[str] = None  # auto-detected from the file when None
    energy_key: str = "energy"
    forces_key: str = "forces"
    energy_only: bool = False  # ignore force labels (GEOM-Drug style energy-only training)
    # Frames with NaN/inf positions, cells, energies or forces are an error naming them;
    # true drops them instead (the count is reported).
    drop_nonfinite: bool = False
    # GEOM-style files: a molecule group without the labels the others carry is an error;
    # true keeps its structures without that label (the count is reported).
    allow_missing_labels: bool = False
    # Counts, or fractions in (0, 1). n_test None: all structures not in train/val; n_train
    # None: all not in val/test. task: pretrain defaults to n_train None, n_val 0.05, n_test 0.
    n_train: Optional[Number] = 950
    n_val: Number = 50
    n_test: Optional[Number] = None
    split_seed: Optional[int] = None  # None: the top-level seed
    num_workers: int = 0


@dataclass
class ModelConfig(Architecture):
    """The backbone architecture (the fields of :class:`~empp_ff.model.spec.Architecture`:
    ``model.num_channels``, ``model.r_max``, ...) plus the reference energies."""

    # "fit": least-squares per-element reference energies on the training split;
    # or a mapping {atomic_number: energy_eV}.
    e0s: Union[str, Dict[int, float]] = "fit"


@dataclass
class LossConfig:
    # "mse": mean squared errors; "l2mae": energy MAE + mean per-atom |ΔF| (Equiformer).
    type: str = "mse"
    energy_weight: float = 1.0
    forces_weight: float = 80.0


@dataclass
class TrainConfig:
    max_epochs: int = 100
    batch_size: int = 8  # global (effective) batch; split evenly over DDP ranks
    eval_batch_size: int = 32
    # Batch by an atom budget instead of a fixed count (drug-sized molecules):
    # each rank's batch holds at most this many atoms.
    max_atoms_per_batch: Optional[int] = None
    lr: float = 5e-3
    # The LR follows a cosine from lr down to lr * min_lr_ratio after the warm-up. 1.0
    # (constant LR; the EMA weights do the averaging, as in mace_run_train) gave 19-35 %
    # lower force errors than a decay to 0.01 at 20 epochs on three molecules.
    min_lr_ratio: float = 1.0
    warmup_epochs: float = 1.0
    weight_decay: float = 5e-7
    grad_clip: Optional[float] = 10.0
    ema: bool = True
    ema_decay: float = 0.99
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: Optional[int] = None  # torch intra-op threads for this run
    progress: bool = True
    tensorboard: bool = True
    # After every epoch, refit the per-element reference energies to the (EMA) model's
    # residual on the training set (train/energy_offset.py): removes the energy offset
    # that the weak energy loss leaves, without changing any force.
    refit_e0s: bool = True
    # Every N optimiser steps, measure the gradient norm each loss term puts on the
    # backbone (metrics.csv grad_* columns); null: never (it costs extra backward passes).
    grad_norm_every: Optional[int] = None


@dataclass
class AuxConfig:
    """Auxiliary losses besides EMPP, for comparison with it (``aux.denoise.*``)."""

    denoise: DenoiseConfig = field(default_factory=DenoiseConfig)


@dataclass
class Config:
    seed: int = 1
    run_dir: str = "runs/demo"
    task: str = "supervised"  # supervised | pretrain
    finetune_from: Optional[str] = None
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    empp: EMPPConfig = field(default_factory=EMPPConfig)
    aux: AuxConfig = field(default_factory=AuxConfig)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------
# Building and validating
# ---------------------------------------------------------------------------------


def _suggest(key: str, valid: List[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(sorted(valid))}"


def _unknown_keys(cls, mapping: Any, prefix: str = "") -> List[tuple]:
    """(dotted key, hint) of every unknown key in ``mapping``, a tree for dataclass ``cls``."""
    if not isinstance(mapping, dict):
        return []  # _build names the bad section
    hints, names = typing.get_type_hints(cls), [f.name for f in dataclasses.fields(cls)]
    found = []
    for key, value in mapping.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            found.append((dotted, _suggest(dotted, [f"{prefix}.{n}" if prefix else n for n in names])))
        elif dataclasses.is_dataclass(hints[key]):
            found += _unknown_keys(hints[key], value, dotted)
    return found


def _check_keys(mapping: Any) -> None:
    """All unknown keys in one error, so that a config with two typos is fixed in one go."""
    found = _unknown_keys(Config, mapping)
    if len(found) == 1:
        raise ConfigError(f"unknown config key '{found[0][0]}'; {found[0][1]}")
    if found:
        raise ConfigError(f"{len(found)} unknown config keys: " + ", ".join(f"'{k}' ({h})" for k, h in found))


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (ints are accepted as floats)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as exc:
                errors.append(exc)
        raise ConfigError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")
    if tp is Any:
        return value
    if origin in (list, List):
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        k_tp, v_tp = typing.get_args(tp) or (Any, Any)
        return {_coerce(k, k_tp, f"{key}.<key>"): _coerce(v, v_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}': expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():  # 1e6, 100.0
            return int(value)
        raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    raise ConfigError(f"config key '{key}': unsupported type {tp}")


def _build(cls, mapping: Any, prefix: str = ""):
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        where = f"config section '{prefix}'" if prefix else "the config"
        raise ConfigError(f"{where} must be a mapping, got {mapping!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in mapping.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            valid = [f"{prefix}.{n}" if prefix else n for n in names]
            raise ConfigError(f"unknown config key '{dotted}'; {_suggest(dotted, valid)}")
        kwargs[key] = _coerce(value, hints[key], dotted)
    return cls(**kwargs)


def _check_values(cfg: Config) -> None:
    def need(cond: bool, msg: str):
        if not cond:
            raise ConfigError(msg)

    need(cfg.task in ("supervised", "pretrain"), f"task must be 'supervised' or 'pretrain', got {cfg.task!r}")
    try:
        cfg.model.validate()
    except ValueError as exc:
        raise ConfigError(f"model.{exc}") from exc
    need(isinstance(cfg.model.e0s, dict) or cfg.model.e0s == "fit", "model.e0s must be 'fit' or a mapping {Z: energy}")
    need(cfg.loss.type in ("mse", "l2mae"), f"loss.type must be 'mse' or 'l2mae', got {cfg.loss.type!r}")
    need(cfg.loss.energy_weight >= 0 and cfg.loss.forces_weight >= 0, "loss weights must be >= 0")
    need(cfg.train.max_epochs >= 1, "train.max_epochs must be >= 1")
    need(cfg.train.batch_size >= 1 and cfg.train.eval_batch_size >= 1, "batch sizes must be >= 1")
    need(cfg.train.lr > 0, "train.lr must be > 0")
    need(0 < cfg.train.ema_decay < 1, "train.ema_decay must lie in (0, 1)")
    need(0 <= cfg.train.min_lr_ratio <= 1, "train.min_lr_ratio must lie in [0, 1]")
    need(cfg.train.warmup_epochs >= 0, "train.warmup_epochs must be >= 0")
    need(cfg.train.grad_clip is None or cfg.train.grad_clip > 0, "train.grad_clip must be > 0 or null")
    need(cfg.train.threads is None or cfg.train.threads >= 1, "train.threads must be >= 1 or null")
    need(cfg.train.max_atoms_per_batch is None or cfg.train.max_atoms_per_batch >= 1,
         "train.max_atoms_per_batch must be >= 1 or null")
    need(cfg.train.grad_norm_every is None or cfg.train.grad_norm_every >= 1,
         "train.grad_norm_every must be >= 1 or null")
    need(
        cfg.train.device == "auto" or cfg.train.device == "cpu" or cfg.train.device.startswith("cuda"),
        f"train.device must be auto, cpu, cuda or cuda:N, got {cfg.train.device!r}",
    )
    for name in ("n_train", "n_val"):
        v = getattr(cfg.data, name)
        need(v is None or v > 0, f"data.{name} must be > 0 (a count, or a fraction in (0, 1)), got {v}")
    if cfg.task == "pretrain":
        need(cfg.empp.enabled, "task 'pretrain' trains with EMPP alone: set empp.enabled: true")
        need(cfg.empp.weight > 0, "task 'pretrain' trains with EMPP alone: empp.weight must be > 0")
    try:
        cfg.empp.validate()
        cfg.empp.reinit_patterns(cfg.model.backbone)  # parts the chosen backbone does not have
        initial_weights(cfg.finetune_from, cfg.empp, cfg.model.backbone)  # a bad empp.pretrained fails before any work
    except ValueError as exc:
        raise ConfigError(f"empp: {exc}") from exc
    try:
        cfg.aux.denoise.validate()
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


#: Split sizes of a pre-training run unless given: everything trains but a 5% validation
#: split; no test split (nothing would evaluate it).
PRETRAIN_SPLITS = {"n_train": None, "n_val": 0.05, "n_test": 0}


def config_from_dict(mapping: Dict[str, Any]) -> Config:
    if isinstance(mapping, dict) and mapping.get("task") == "pretrain" and isinstance(mapping.get("data", {}), dict):
        mapping = dict(mapping, data={**PRETRAIN_SPLITS, **(mapping.get("data") or {})})
    _check_keys(mapping)
    cfg = _build(Config, mapping)
    _check_values(cfg)
    return cfg


# ---------------------------------------------------------------------------------
# YAML and --set overrides
# ---------------------------------------------------------------------------------



class _Loader(yaml.SafeLoader):
    """YAML 1.1 (PyYAML) reads ``5e-3`` and ``1e6`` as strings; read them as numbers
    (as YAML 1.2 does). A subclass: PyYAML's own loaders are left untouched."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def read_yaml(path: Union[str, Path]) -> Dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = parse_yaml(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse {path} as YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must contain a mapping at the top level")
    return data


def apply_overrides(mapping: Dict[str, Any], overrides: List[str]) -> Dict[str, Any]:
    """Apply ``key.sub=value`` strings (values parsed as YAML) to a nested mapping."""
    result = _deepcopy(mapping)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            value = parse_yaml(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: '{part}' is not a section")
            node = child
        node[parts[-1]] = value
    return result


def _deepcopy(d):
    if isinstance(d, dict):
        return {k: _deepcopy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deepcopy(v) for v in d]
    return d


def load_config(path: Optional[Union[str, Path]] = None, overrides: Optional[List[str]] = None) -> Config:
    """The demo config when ``path`` is None, then ``overrides`` on top."""
    overrides = list(overrides or [])
    mapping = apply_overrides(DEMO_CONFIG if path is None else read_yaml(path), overrides)
    if path is None:
        mapping = adjust_demo(mapping, {item.split("=", 1)[0].strip() for item in overrides})
    return config_from_dict(mapping)


def dump_config(cfg: Config, path: Union[str, Path]) -> None:
    from empp_ff.train.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
