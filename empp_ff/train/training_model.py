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

from empp_ff.model.backbone import build_backbone
from empp_ff.model.potential import Potential
from empp_ff.model.spec import BackboneSpec
from empp_ff.train.config import Config, ConfigError
from empp_ff.train.evaluate import predict


class TrainingModel(torch.nn.Module):
    def __init__(self, potential: Potential, empp: Optional[torch.nn.Module] = None,
                 denoise: Optional[torch.nn.Module] = None):
        super().__init__()
        self.potential = potential
        self.empp = empp
        self.denoise = denoise

    def forward(
        self,
        batch,
        supervised: bool = True,
        compute_forces: bool = True,
        generator: Optional[torch.Generator] = None,
        use_labels: bool = True,
        run_empp: bool = True,
        run_denoise: bool = True,
        replay_batch=None,
    ) -> Dict[str, torch.Tensor]:
        out: Dict[str, torch.Tensor] = {}
        if supervised:
            # Forces by autograd; create_graph so the force loss trains the weights.
            out.update(predict(self.potential, batch, compute_forces=compute_forces,
                               create_graph=compute_forces and self.training))
        if self.empp is not None and run_empp:
            empp_out = self.empp(self.potential.backbone, batch, generator, use_labels=use_labels)
            out.update({f"empp_{k}" if not k.startswith("empp") else k: v for k, v in empp_out.items()})
        if self.denoise is not None and run_denoise:
            out["denoise_loss"] = self.denoise(self.potential.backbone, batch, generator, use_labels=use_labels)["loss"]
        if replay_batch is not None:  # EMPP replay: unlabelled structures of another data set
            out["replay_empp_loss"] = self.empp(self.potential.backbone, replay_batch, generator,
                                                use_labels=False)["loss"]
        return out


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
        empp = denoise = None
        if cfg.empp.trains:
            from empp_ff.empp.module import EMPPModule

            # Built in the backbone dtype; its label statistics stay float64 buffers.
            empp = EMPPModule(cfg.empp, potential.backbone, label_stats)
        if cfg.aux.denoise.enabled:
            from empp_ff.denoise.module import DenoiseModule

            denoise = DenoiseModule(cfg.aux.denoise, potential.backbone, label_stats["force_scale"])
    if start is not spec:
        potential.backbone.set_reference_energies(spec.atomic_energies)
    model = TrainingModel(potential, empp, denoise).to(device)
    if not dist.enabled:
        return model, model
    from torch.nn.parallel import DistributedDataParallel

    balanced = [n for n, c in (("empp", cfg.empp), ("aux.denoise", cfg.aux.denoise))
                if c.enabled and c.grad_balance is not None]
    if balanced:
        raise ConfigError(f"{balanced[0]}.grad_balance needs one backward pass per loss term, which "
                          "DistributedDataParallel does not support: set it to null for multi-process runs")
    # Auxiliary encoders are idle on some batches (no forces, batch_fraction): allow unused parameters.
    return model, DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                          find_unused_parameters=empp is not None or denoise is not None)
