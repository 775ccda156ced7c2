"""Coordinate denoising as an auxiliary loss of a training run (the ``aux.denoise:``
section), through :class:`~empp_ff.auxiliary.loss.AuxiliaryLoss`."""

from __future__ import annotations

from typing import Dict, Optional

import torch

from empp_ff.auxiliary.loss import AuxiliaryLoss


class DenoiseAuxiliary(AuxiliaryLoss):
    name = "denoise"
    label = "denoise"
    config_key = "aux.denoise"
    outputs = {"denoise_loss": "loss"}
    validation_seed = 1299709
    # val_loss kept the meaning it had before denoising was validated (the supervised loss
    # plus EMPP's term): val_denoise_loss is reported beside it, not added to it.
    counts_in_val_loss = False

    def build_module(self, backbone, label_stats: Dict[str, float]) -> torch.nn.Module:
        from empp_ff.denoise.module import DenoiseModule

        return DenoiseModule(self.config, backbone, label_stats["force_scale"])

    def compute(self, module, backbone, batch, generator: Optional[torch.Generator],
                use_labels: bool) -> Dict[str, torch.Tensor]:
        return {"denoise_loss": module(backbone, batch, generator, use_labels=use_labels)["loss"]}
