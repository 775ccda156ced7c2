"""The trainable unit: the potential plus (optionally) the auxiliary-loss modules.

One ``nn.Module`` whose forward does a whole training step's computation — the
clean supervised pass, the batched masked EMPP pass and the noisy denoising pass
— so that an optimiser, EMA and DistributedDataParallel each see one module and
one forward per step. :func:`build_training_model` builds it for a run.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Sequence, Tuple

import torch

from empp_ff.auxiliary.loss import AuxiliaryLoss
from empp_ff.model.backbone import build_backbone
from empp_ff.model.potential import Potential
from empp_ff.model.spec import BackboneSpec
from empp_ff.train.auxiliaries import KNOWN, configured, run_auxiliaries
from empp_ff.train.config import Config, ConfigError
from empp_ff.train.empp_replay import REPLAY_LOSS
from empp_ff.train.evaluate import predict


class TrainingModel(torch.nn.Module):
    """The potential and the modules of the run's auxiliary losses, each held as the attribute
    of its name (``model.empp``, ``model.denoise``; None when the run has no such auxiliary)."""

    def __init__(self, potential: Potential,
                 auxiliaries: Sequence[Tuple[AuxiliaryLoss, torch.nn.Module]] = ()):
        super().__init__()
        self.potential = potential
        for kind in KNOWN:
            setattr(self, kind.name, None)
        for aux, module in auxiliaries:  # registered in this order: state dicts, optimiser
            setattr(self, aux.name, module)
        self.auxiliaries: Tuple[AuxiliaryLoss, ...] = tuple(aux for aux, _ in auxiliaries)

    def forward(
        self,
        batch,
        supervised: bool = True,
        compute_forces: bool = True,
        generator: Optional[torch.Generator] = None,
        use_labels: bool = True,
        run: Optional[Sequence[str]] = None,
        replay_batch=None,
    ) -> Dict[str, torch.Tensor]:
        """The step's outputs: energy and forces (``supervised``), the outputs of the auxiliaries
        named in ``run`` (None: all), and with ``replay_batch`` the EMPP loss of the replay data."""
        out: Dict[str, torch.Tensor] = {}
        if supervised:
            # Forces by autograd; create_graph so the force loss trains the weights.
            out.update(predict(self.potential, batch, compute_forces=compute_forces,
                               create_graph=compute_forces and self.training))
        for aux in self.auxiliaries:  # in this order: each draws from the generator
            if run is None or aux.name in run:
                out.update(aux.compute(getattr(self, aux.name), self.potential.backbone, batch, generator,
                                       use_labels))
        if replay_batch is not None:  # EMPP replay: unlabelled structures of another data set
            out[REPLAY_LOSS] = self.empp(self.potential.backbone, replay_batch, generator, use_labels=False)["loss"]
        return out

    def validation_step(self, aux: AuxiliaryLoss, batch, generator: Optional[torch.Generator],
                        use_labels: bool) -> Dict[str, float]:
        """``aux``'s outputs on one validation batch (no gradients), as numbers."""
        return aux.validation_step(getattr(self, aux.name), self.potential.backbone, batch, generator, use_labels)


def build_training_model(cfg: Config, spec: BackboneSpec, label_stats: Dict[str, float], device: torch.device,
                         dist, start_energies: Optional[Sequence[float]] = None) -> Tuple[TrainingModel,
                                                                                         torch.nn.Module]:
    """The run's TrainingModel (seeded initialisation) and what runs its steps: itself, or its DDP wrapper.

    ``start_energies``: the per-element reference energies the run started with, where ``spec`` carries
    refitted ones (a resumed run, ``train.refit_e0s``). The modules are then built with the start energies,
    as the uninterrupted run's were: EMPP's energy labels stay relative to them (its label statistics are),
    and it keeps them in a buffer that no state dict holds. The backbone then takes ``spec``'s energies.
    """
    start = spec if start_energies is None else dataclasses.replace(spec, atomic_energies=list(start_energies))
    with torch.random.fork_rng(devices=[]):  # seeded weight initialisation; the caller's RNG is untouched
        torch.manual_seed(cfg.seed)
        potential = Potential(build_backbone(start))
        auxiliaries = [(aux, aux.build_module(potential.backbone, label_stats)) for aux in run_auxiliaries(cfg)]
    if start is not spec:
        potential.backbone.set_reference_energies(spec.atomic_energies)
    model = TrainingModel(potential, auxiliaries).to(device)
    if not dist.enabled:
        return model, model
    from torch.nn.parallel import DistributedDataParallel

    balanced = [aux.config_key for aux in configured(cfg) if aux.config.enabled and aux.config.grad_balance is not None]
    if balanced:
        raise ConfigError(f"{balanced[0]}.grad_balance needs one backward pass per loss term, which "
                          "DistributedDataParallel does not support: set it to null for multi-process runs")
    # Auxiliary encoders are idle on some batches (no forces, batch_fraction): allow unused parameters.
    return model, DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                          find_unused_parameters=bool(auxiliaries))
