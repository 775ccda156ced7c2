"""The training configuration: its sections, their checks, and how a config is loaded.

A config is a tree of dataclasses (the engine: ``typed_config.py``) built from
YAML (``config_yaml.py``). Each section checks its own values (its ``validate``);
``Config.validate`` checks what involves several sections. The engine runs them all
before any work starts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import yaml

from empp_ff.denoise.config import DenoiseConfig
from empp_ff.empp.config import EMPPConfig
from empp_ff.empp.pretrained import initial_weights
from empp_ff.model.spec import Architecture
from empp_ff.train.config_yaml import apply_overrides, parse_yaml, read_yaml  # noqa: F401 (re-exported)
from empp_ff.train.demo_config import DEMO_CONFIG, adjust_demo  # noqa: F401 (DEMO_CONFIG: re-exported)
from empp_ff.train.schedule import SCHEDULERS
from empp_ff.train.typed_config import ConfigError, load  # noqa: F401 (ConfigError: re-exported)

Number = Union[int, float]


def _need(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


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

    def validate(self) -> None:
        # numpy takes no seed < 0
        _need(self.split_seed is None or self.split_seed >= 0,
              f"data.split_seed must be a non-negative integer, got {self.split_seed!r}")
        for name in ("n_train", "n_val"):
            v = getattr(self, name)
            _need(v is None or v > 0, f"data.{name} must be > 0 (a count, or a fraction in (0, 1)), got {v}")


@dataclass
class ModelConfig(Architecture):
    """The backbone architecture (the fields of :class:`~empp_ff.model.spec.Architecture`:
    ``model.num_channels``, ``model.r_max``, ...) plus the reference energies."""

    # "fit": least-squares per-element reference energies on the training split;
    # or a mapping {atomic_number: energy_eV}.
    e0s: Union[str, Dict[int, float]] = "fit"

    def validate(self) -> None:
        try:
            super().validate()
        except ValueError as exc:
            raise ConfigError(f"model.{exc}") from exc
        _need(isinstance(self.e0s, dict) or self.e0s == "fit", "model.e0s must be 'fit' or a mapping {Z: energy}")


@dataclass
class LossConfig:
    # "mse": mean squared errors; "l2mae": energy MAE + mean per-atom |ΔF| (Equiformer).
    type: str = "mse"
    energy_weight: float = 1.0
    forces_weight: float = 80.0

    def validate(self) -> None:
        _need(self.type in ("mse", "l2mae"), f"loss.type must be 'mse' or 'l2mae', got {self.type!r}")
        _need(self.energy_weight >= 0 and self.forces_weight >= 0, "loss weights must be >= 0")


@dataclass
class TrainConfig:
    # The cap: training ends here at the latest (a run still improving then says so).
    max_epochs: int = 100
    # Early stopping: end after this many epochs without a better validation metric (the
    # one that selects best.pt); null: train to max_epochs.
    patience: Optional[int] = None
    # What counts as an improvement for patience and the plateau schedule: a validation
    # metric lower than the best by more than this fraction (0: any; best.pt is always the
    # lowest). Without it, the ever smaller gains after each rate reduction keep a small-data
    # run going for thousands of epochs.
    min_improvement: float = 0.0
    # The same threshold for the plateau schedule alone (null: min_improvement). 0 halves the
    # rate only after plateau_patience epochs with no better metric at all, which keeps the
    # rate up while small gains still come, and stop later on a coarser min_improvement.
    plateau_min_improvement: Optional[float] = None
    # "cosine": warm-up, then a cosine from lr to lr * min_lr_ratio over max_epochs (1.0:
    # constant). "plateau": warm-up, then lr * plateau_factor after plateau_patience epochs
    # without improvement (as mace_run_train's and nequip-train's ReduceLROnPlateau), never
    # below lr * plateau_min_lr_ratio.
    scheduler: str = "cosine"
    plateau_factor: float = 0.5
    plateau_patience: int = 10
    plateau_min_lr_ratio: float = 1e-3
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

    def validate(self) -> None:
        _need(self.max_epochs >= 1, "train.max_epochs must be >= 1")
        _need(self.patience is None or self.patience >= 1, "train.patience must be >= 1 or null")
        _need(0 <= self.min_improvement < 1, "train.min_improvement must lie in [0, 1)")
        _need(self.plateau_min_improvement is None or 0 <= self.plateau_min_improvement < 1,
              "train.plateau_min_improvement must lie in [0, 1) or be null")
        _need(self.scheduler in SCHEDULERS,
              f"train.scheduler must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}")
        _need(0 < self.plateau_factor < 1, "train.plateau_factor must lie in (0, 1)")
        _need(self.plateau_patience >= 1, "train.plateau_patience must be >= 1")
        _need(0 < self.plateau_min_lr_ratio <= 1, "train.plateau_min_lr_ratio must lie in (0, 1]")
        _need(self.batch_size >= 1 and self.eval_batch_size >= 1, "batch sizes must be >= 1")
        _need(self.lr > 0, "train.lr must be > 0")
        _need(0 < self.ema_decay < 1, "train.ema_decay must lie in (0, 1)")
        _need(0 <= self.min_lr_ratio <= 1, "train.min_lr_ratio must lie in [0, 1]")
        _need(self.warmup_epochs >= 0, "train.warmup_epochs must be >= 0")
        _need(self.grad_clip is None or self.grad_clip > 0, "train.grad_clip must be > 0 or null")
        _need(self.threads is None or self.threads >= 1, "train.threads must be >= 1 or null")
        _need(self.max_atoms_per_batch is None or self.max_atoms_per_batch >= 1,
              "train.max_atoms_per_batch must be >= 1 or null")
        _need(self.grad_norm_every is None or self.grad_norm_every >= 1, "train.grad_norm_every must be >= 1 or null")
        _need(self.device in ("auto", "cpu") or self.device.startswith("cuda"),
              f"train.device must be auto, cpu, cuda or cuda:N, got {self.device!r}")


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

    def validate(self) -> None:
        """The top-level keys and what involves several sections (each section checks itself)."""
        _need(self.task in ("supervised", "pretrain"), f"task must be 'supervised' or 'pretrain', got {self.task!r}")
        _need(self.seed >= 0, f"seed must be a non-negative integer, got {self.seed!r}")  # numpy takes none < 0
        if self.empp.replays:
            _need(self.task == "supervised", "empp.replay_data rehearses unlabelled data during supervised "
                  "fine-tuning; a pretrain run trains on its data.path alone")
            _need(Path(self.empp.replay_data).expanduser().exists(),
                  f"empp.replay_data: file not found: {self.empp.replay_data}")
        if self.task == "pretrain":
            _need(self.empp.enabled, "task 'pretrain' trains with EMPP alone: set empp.enabled: true")
            _need(self.empp.weight > 0, "task 'pretrain' trains with EMPP alone: empp.weight must be > 0")
        try:
            self.empp.reinit_patterns(self.model.backbone)  # parts the chosen backbone does not have
            initial_weights(self.finetune_from, self.empp, self.model.backbone)  # a bad empp.pretrained fails now
        except ValueError as exc:
            raise ConfigError(f"empp: {exc}") from exc


#: Split sizes of a pre-training run unless given: everything trains but a 5% validation
#: split; no test split (nothing would evaluate it).
PRETRAIN_SPLITS = {"n_train": None, "n_val": 0.05, "n_test": 0}


def config_from_dict(mapping: Dict[str, Any]) -> Config:
    if isinstance(mapping, dict) and mapping.get("task") == "pretrain" and isinstance(mapping.get("data", {}), dict):
        mapping = dict(mapping, data={**PRETRAIN_SPLITS, **(mapping.get("data") or {})})
    return load(Config, mapping)


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
