"""Per-interaction conditioning of the masked copies (spec §3.4).

For interaction t and masked-copy graph g:

    c_t = Linear_out,t( SiLU( Emb_t(z_i) + W_e,t·Gauss(y) ) ) + W_f,t( SH(f_i / force_scale) )

* Emb_t: one-hot over the backbone's species → ``cond_dim`` scalars (with bias);
* Gauss: ``energy_gauss_num`` Gaussians on ``energy_gauss_range``, width = spacing,
  of the standardised (clamped) per-atom interaction energy y of the source
  molecule; W_e,t: Linear → ``cond_dim``;
* SH: e3nn real SH l = 0..``force_sh_lmax`` with parity (−1)^l (0e+1o+2e+3o),
  ``normalize=False`` (components scale as |f̃|^l), of the force on the masked
  atom divided by ``force_scale``; W_f,t: o3.Linear → message irreps of t;
* Linear_out,t: o3.Linear ``cond_dim x 0e`` → message irreps of t.

The energy term is dropped per graph where its label is missing (``energy_on``
false) and the force term where there is no force label (``force_on`` false);
with both off only the element remains (pretraining / energy-only data).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch

from empp_ff._elements import z_table
from empp_ff.auxiliary.harmonics import real_sh
from empp_ff.model._imports import import_e3nn_o3
from empp_ff.model.irreps import irreps_up_to
from empp_ff.model.transfer import ElementLayout, whole_tensor_layout


class GaussianCode(torch.nn.Module):
    def __init__(self, num: int, low: float, high: float):
        super().__init__()
        centres = torch.linspace(float(low), float(high), int(num))
        self.register_buffer("centres", centres, persistent=False)
        self.width = float((high - low) / (num - 1))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return torch.exp(-0.5 * ((y[:, None] - self.centres[None, :]) / self.width) ** 2)


class LayerConditioning(torch.nn.Module):
    """The encoders of one interaction layer."""

    def __init__(self, message_irreps, num_species: int, cond_dim: int, gauss_num: int,
                 force_irreps: Optional[str], use_energy: bool):
        super().__init__()
        o3 = import_e3nn_o3()
        self.element = torch.nn.Linear(num_species, cond_dim)
        self.energy = torch.nn.Linear(gauss_num, cond_dim) if use_energy else None
        self.out = o3.Linear(o3.Irreps(f"{cond_dim}x0e"), o3.Irreps(message_irreps))
        self.force = o3.Linear(o3.Irreps(force_irreps), o3.Irreps(message_irreps)) if force_irreps else None

    def element_indexed_parameters(self) -> Dict[str, ElementLayout]:
        """The element code's weight: a linear map of the one-hot over the backbone's species
        (fine-tuning across element sets carries its columns by atomic number)."""
        return {"element.weight": whole_tensor_layout(self.element.weight, axis=1)}

    def forward(self, onehot, gauss, energy_on, force_sh, force_on) -> torch.Tensor:
        s = self.element(onehot)
        if self.energy is not None and gauss is not None:
            s = s + self.energy(gauss) * energy_on[:, None]
        c = self.out(torch.nn.functional.silu(s))
        if self.force is not None and force_sh is not None:
            c = c + self.force(force_sh) * force_on[:, None]
        return c


class LabelConditioning(torch.nn.Module):
    def __init__(self, config, atomic_numbers: Sequence[int], message_irreps: Sequence):
        super().__init__()
        self.num_species = len(atomic_numbers)
        z_to_index = z_table(atomic_numbers, torch.arange(len(atomic_numbers)), -1, torch.long)
        self.register_buffer("z_to_index", z_to_index, persistent=False)
        self.use_energy = bool(config.use_energy_label)
        self.use_force = bool(config.use_force_label)
        self.force_lmax = int(config.force_sh_lmax)
        low, high = config.energy_gauss_range
        self.gauss = GaussianCode(config.energy_gauss_num, low, high)
        force_irreps = irreps_up_to(1, self.force_lmax) if self.use_force else None
        self.layers = torch.nn.ModuleList(
            LayerConditioning(irreps, self.num_species, config.cond_dim, config.energy_gauss_num,
                              force_irreps, self.use_energy)
            for irreps in message_irreps
        )

    def forward(
        self,
        masked_element: torch.Tensor,
        energy_label: Optional[torch.Tensor] = None,
        energy_on: Optional[torch.Tensor] = None,
        scaled_force: Optional[torch.Tensor] = None,
        force_on: Optional[torch.Tensor] = None,
    ) -> List[torch.Tensor]:
        """Per-layer ``[G, dim(message_irreps[t])]`` for G masked-copy graphs.

        ``masked_element`` [G] atomic numbers (entries of skipped copies may be any
        known element or 0); ``energy_label`` [G] standardised y (finite where
        ``energy_on``); ``scaled_force`` [G, 3] f/force_scale (finite where ``force_on``).
        """
        dtype = self.layers[0].element.weight.dtype
        species = self.z_to_index[masked_element].clamp(min=0)
        onehot = torch.nn.functional.one_hot(species, self.num_species).to(dtype)
        gauss = e_on = None
        if self.use_energy and energy_label is not None and energy_on is not None:
            y = torch.where(energy_on, energy_label, torch.zeros_like(energy_label)).to(dtype)
            gauss = self.gauss(y).to(dtype)
            e_on = energy_on.to(dtype)
        sh = f_on = None
        if self.use_force and scaled_force is not None and force_on is not None:
            f = torch.where(force_on[:, None], scaled_force, torch.zeros_like(scaled_force)).to(dtype)
            sh = real_sh(self.force_lmax, f, normalize=False)
            f_on = force_on.to(dtype)
        return [layer(onehot, gauss, e_on, sh, f_on) for layer in self.layers]
