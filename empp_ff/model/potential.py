"""Energy, forces (= −∂E/∂r by autograd) and virial from a backbone.

``Potential`` is the one place where the physics outputs are derived, used by
training (batched graphs) and by the exported model (one structure, with an
optional count of locally owned atoms for LAMMPS). It is TorchScript-able.

Virial: positions and the Cartesian periodic shifts are both strained by a
symmetric displacement ε (r → r + r·ε), and W = −∂E/∂ε. For a molecule this is
Σ r⊗F; for a periodic cell the shifts carry the cell deformation, so
stress = −W / V (ASE sign convention) needs no cell argument.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import torch

from empp_ff.model.interface import Backbone
from empp_ff.model.scatter import scatter_sum


class Potential(torch.nn.Module):
    def __init__(self, backbone: Backbone):
        super().__init__()
        self.backbone = backbone
        self.r_max = backbone.r_max
        self.num_interactions = backbone.num_interactions

    def forward(
        self,
        positions: torch.Tensor,
        atomic_numbers: torch.Tensor,
        edge_index: torch.Tensor,
        shifts: torch.Tensor,
        batch: torch.Tensor,
        num_graphs: int,
        compute_forces: bool = True,
        compute_virial: bool = False,
        create_graph: bool = False,
        energy_mask: Optional[torch.Tensor] = None,
    ) -> Dict[str, torch.Tensor]:
        """Outputs: ``energy`` [B], ``node_energy`` [N], ``node_feats`` [N, d],
        and, when asked, ``forces`` [N, 3] and ``virial`` [B, 3, 3].

        ``energy_mask`` [N] bool (LAMMPS): only these atoms' energies count
        towards ``energy``; forces still act on every atom (ghosts included).
        """
        displacement = torch.zeros(
            (num_graphs, 3, 3), dtype=positions.dtype, device=positions.device
        )
        leaf = positions
        if compute_forces or compute_virial:
            leaf = positions.detach().requires_grad_(True)
            positions = leaf
        if compute_virial:
            displacement.requires_grad_(True)
            symmetric = 0.5 * (displacement + displacement.transpose(-1, -2))
            positions = positions + torch.einsum("ni,nij->nj", positions, symmetric[batch])
            edge_graph = batch[edge_index[0]]
            shifts = shifts + torch.einsum("ei,eij->ej", shifts, symmetric[edge_graph])
        node_energy, node_feats = self.backbone(positions, atomic_numbers, edge_index, shifts)
        counted = node_energy if energy_mask is None else node_energy * energy_mask.to(node_energy.dtype)
        # Accumulate in float64: per-atom energies include large reference energies,
        # and a float32 running sum over thousands of atoms loses several meV/atom.
        energy = scatter_sum(counted.to(torch.float64), batch, num_graphs).to(counted.dtype)
        out: Dict[str, torch.Tensor] = {
            "energy": energy,
            "node_energy": node_energy,
            "node_feats": node_feats,
        }
        if compute_forces or compute_virial:
            inputs: List[torch.Tensor] = [leaf]
            if compute_virial:
                inputs.append(displacement)
            grads = torch.autograd.grad(
                [energy.sum()],
                inputs,
                create_graph=create_graph,
                retain_graph=create_graph,
                allow_unused=True,
            )
            if compute_forces:
                g = grads[0]
                out["forces"] = -g if g is not None else torch.zeros_like(positions)
            if compute_virial:
                g = grads[1]
                out["virial"] = -g if g is not None else torch.zeros_like(displacement)
        return out
