"""EMPP as an auxiliary loss of a training run (the ``empp:`` section): its module,
its outputs and its weighting, through :class:`~empp_ff.auxiliary.loss.AuxiliaryLoss`.

Pre-training (``task: pretrain``) is this auxiliary alone.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch

from empp_ff.auxiliary.loss import AuxiliaryLoss


class EMPPAuxiliary(AuxiliaryLoss):
    name = "empp"
    label = "EMPP"
    config_key = "empp"
    outputs = {"empp_loss": "loss", "empp_radius_kl": "radius KL", "empp_direction_kl": "direction KL"}
    validation_seed = 104729

    @property
    def has_module(self) -> bool:
        # weight 0 with EMPP replay: the module trains on the replay data alone
        return self.config.trains

    @property
    def enters_objective(self) -> bool:
        return self.has_module and self.config.weight > 0

    def build_module(self, backbone, label_stats: Dict[str, float]) -> torch.nn.Module:
        from empp_ff.empp.module import EMPPModule

        # Built in the backbone dtype; its label statistics stay float64 buffers.
        return EMPPModule(self.config, backbone, label_stats)

    def compute(self, module, backbone, batch, generator: Optional[torch.Generator],
                use_labels: bool) -> Dict[str, torch.Tensor]:
        out = module(backbone, batch, generator, use_labels=use_labels)
        return {"empp_loss": out["loss"], "empp_radius_kl": out["radius_kl"], "empp_direction_kl": out["direction_kl"]}
