"""The auxiliary losses training knows (:class:`~empp_ff.auxiliary.loss.AuxiliaryLoss`),
which of them a config turns on, and the validation loop they share."""

from __future__ import annotations

from typing import Dict, List, Tuple, Type

import torch

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


def validation_losses(model, aux: AuxiliaryLoss, loader, seed: int, use_labels: bool, device: torch.device,
                      dist) -> Dict[str, float]:
    """``aux``'s outputs on the validation ``loader`` for ``model`` (a TrainingModel), with the
    same random draws every epoch; ``val_<output>`` keys, averaged over all ranks' batches."""
    from empp_ff.data.dataset import epoch_generator
    from empp_ff.train.distributed import reduce_mean_dict

    generator = epoch_generator(seed + aux.validation_seed, 0)
    module, backbone = getattr(model, aux.name), model.potential.backbone
    sums: Dict[str, float] = {}
    count = 0
    model.eval()
    for batch in loader:
        values = aux.validation_step(module, backbone, batch.to(device), generator, use_labels)
        for key, value in values.items():
            sums[key] = sums.get(key, 0.0) + value
        count += 1
    return {f"val_{k}": v for k, v in reduce_mean_dict(dist, sums, count, device).items()}
