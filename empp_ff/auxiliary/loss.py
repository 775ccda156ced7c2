"""What an auxiliary loss is to training: the interface that EMPP and coordinate
denoising implement.

Training knows an auxiliary loss only through this interface: its ``name`` (the
objective's term, the ``TrainingModel`` attribute that holds its module, the
checkpoint's ``<name>_state``, ``grad_norm_<name>``), the per-step values it
``outputs`` (their metrics.csv columns; the first is the loss), its weighting over
time (its config section, an :class:`~empp_ff.auxiliary.weighting.AuxWeighting`), the
module it trains, and its validation step. The objective, the epoch statistics, the
report, the plots and the checkpoint derive their terms, columns and keys from it, so a
new auxiliary loss is its config section, one implementation and its entry in
``empp_ff.train.auxiliaries``.
"""

from __future__ import annotations

import functools
from typing import ClassVar, Dict, Optional, Tuple

import torch

from empp_ff.auxiliary.weighting import AuxWeighting


class AuxiliaryLoss:
    """One auxiliary loss of a run, configured by its section of the training config."""

    #: the objective's term, the TrainingModel attribute of its module, ``<name>_state`` in checkpoints
    name: ClassVar[str]
    #: how the log line and the plots call it
    label: ClassVar[str]
    #: its section of the training config (``empp``, ``aux.denoise``), also the prefix of its errors
    config_key: ClassVar[str]
    #: the per-step values it reports, named as in metrics.csv, each with what a plot title calls
    #: it; the first is the loss the objective weights
    outputs: ClassVar[Dict[str, str]]
    #: seed offset of its validation draws (the same masks or noise every epoch)
    validation_seed: ClassVar[int]
    #: whether its weighted validation loss is part of ``val_loss`` (the training objective on
    #: the validation split)
    counts_in_val_loss: ClassVar[bool] = True

    def __init__(self, config: AuxWeighting):
        self.config = config

    @classmethod
    def section(cls, cfg) -> AuxWeighting:
        """This auxiliary's section of the training config ``cfg``."""
        return functools.reduce(getattr, cls.config_key.split("."), cfg)

    # -- names ---------------------------------------------------------------------------
    @classmethod
    def loss_key(cls) -> str:
        return next(iter(cls.outputs))

    @classmethod
    def validation_columns(cls) -> Tuple[str, ...]:
        return tuple(f"val_{key}" for key in cls.outputs)

    @classmethod
    def state_key(cls) -> str:
        return f"{cls.name}_state"

    # -- what a run does with it ---------------------------------------------------------
    @property
    def has_module(self) -> bool:
        """Whether the run builds (and trains) its module."""
        return bool(self.config.enabled)

    @property
    def enters_objective(self) -> bool:
        """Whether its loss is a term of the training objective (weighted, scheduled)."""
        return self.has_module

    def weighted(self, loss, factor: float):
        """Its term in the objective: λ · (schedule factor) · loss. The one place of the formula,
        for the training objective and for ``val_loss``."""
        return self.config.weight * factor * loss

    def build_module(self, backbone, label_stats: Dict[str, float]) -> torch.nn.Module:
        raise NotImplementedError

    def compute(self, module, backbone, batch, generator: Optional[torch.Generator],
                use_labels: bool) -> Dict[str, torch.Tensor]:
        """Its ``outputs`` on one batch (scalar tensors; the loss NOT weighted)."""
        raise NotImplementedError

    def validation_step(self, module, backbone, batch, generator: Optional[torch.Generator],
                        use_labels: bool) -> Dict[str, float]:
        """Its ``outputs`` on one validation batch, as numbers (``generator``: the fixed
        validation stream). The training computation without gradients unless overridden."""
        with torch.no_grad():
            return {k: float(v) for k, v in self.compute(module, backbone, batch, generator, use_labels).items()}
