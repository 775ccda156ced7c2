"""The auxiliary losses training knows (:class:`~empp_ff.auxiliary.loss.AuxiliaryLoss`)
and which of them a config turns on (their shared validation loop: ``evaluate.py``)."""

from __future__ import annotations

from typing import List, Tuple, Type

from empp_ff.auxiliary.loss import AuxiliaryLoss
from empp_ff.denoise.auxiliary import DenoiseAuxiliary
from empp_ff.empp.auxiliary import EMPPAuxiliary

#: Every auxiliary loss, in the order a run registers their modules (state dicts, the optimiser's
#: parameter order), draws their random numbers in a step, and lists their columns.
KNOWN: Tuple[Type[AuxiliaryLoss], ...] = (EMPPAuxiliary, DenoiseAuxiliary)

#: The auxiliary a self-supervised run (``task: pretrain``, or data without energies) trains
#: alone; its validation loss selects best.pt there.
SELF_SUPERVISED: Type[AuxiliaryLoss] = EMPPAuxiliary


def configured(cfg) -> List[AuxiliaryLoss]:
    """Every known auxiliary with its section of the training config ``cfg``."""
    return [kind(kind.section(cfg)) for kind in KNOWN]


def run_auxiliaries(cfg) -> List[AuxiliaryLoss]:
    """The auxiliaries whose modules a run with config ``cfg`` builds and trains."""
    return [aux for aux in configured(cfg) if aux.has_module]
