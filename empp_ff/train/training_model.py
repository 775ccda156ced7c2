"""The trainable unit: the potential plus (optionally) the auxiliary-loss modules.

One ``nn.Module`` whose forward does a whole training step's computation — the
clean supervised pass, the batched masked EMPP pass and the noisy denoising pass
— so that an optimiser, EMA and DistributedDataParallel each see one module and
one forward per step.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch

from empp_ff.model.potential import Potential
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
        return out
