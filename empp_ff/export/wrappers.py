"""The TorchScript modules a model file holds: the model-file contract.

The contract (format version 1 for TorchScript, 2 for packages; the
call below is the same for both in Python), relied on by ``EMPPCalculator``
and the LAMMPS pair style::

    forward(positions: Tensor[N, 3], atomic_numbers: Tensor[N] int64,
            edge_index: Tensor[2, E] int64, shifts: Tensor[E, 3],
            n_local: int, compute_virial: bool) -> Dict[str, Tensor]

* ``edge_index[0]`` is the sender, ``edge_index[1]`` the receiver; the edge
  vector is ``pos[receiver] - pos[sender] + shifts`` (Cartesian, Å).
* ``energy`` (0-d, eV) sums the per-atom energies of atoms ``0..n_local-1``
  (LAMMPS passes local atoms first, then ghosts; ASE passes ``n_local = N``);
  ``node_energy`` [N]; ``forces`` [N, 3] = −∂energy/∂positions for every atom,
  ghosts included; ``virial`` [3, 3] (W = −∂E/∂ε, stress = −W/V) only when
  ``compute_virial``.
* Positions/shifts of any float dtype are cast to the model dtype; outputs are
  in the model dtype. An atomic number outside the model's species raises.
* Attributes readable from C++ with ``module.attr(name)``: ``r_max`` (float),
  ``num_interactions`` (int), ``atomic_numbers`` (List[int]), ``model_dtype``
  ("float32"/"float64"), ``format_version`` (int).
* ``metadata.json`` is stored as an extra file; its ``checksum`` (SHA-256 of
  everything else in the archive, ``checksum.py``) is verified by every reader.

Layer-wise entry points (``halo_version`` 1): every export writes them; files
exported before they existed have none, and callers run those through
``forward`` only. They let an MD engine evaluate the model one interaction at a time on
its own atoms, exchanging node features of ghost atoms between layers, so a
domain needs a ghost shell of one ``r_max`` whatever ``num_interactions`` is
(LAMMPS ``pair_style empp halo yes``)::

    halo_prepare(positions[N, 3], atomic_numbers[N], edge_index[2, E], shifts[E, 3],
                 n_local: int) -> ctx: List[Tensor]
    halo_layer(t: int, ctx, node_feats: Optional[Tensor[N, d_t]], n_local: int)
        -> (node_feats_out[n_local, d_{t+1}], node_energy_t[n_local])

* Nodes ``0..n_local-1`` are the caller's own atoms, the rest ghosts; every edge's
  receiver must be one of the own atoms (each own atom needs all its edges).
* ``halo_prepare`` validates and computes the per-edge geometry once; ``ctx`` is
  opaque and differentiable with respect to the ``positions`` passed in.
* ``halo_layer(t, ...)``: ``node_feats`` is ``None`` for t = 0 and otherwise
  layer t-1's output for *every* node, the ghost rows copied from the atoms'
  owners. Summed over t, ``node_energy_t`` is ``forward``'s ``node_energy``.
* Forces are autograd of the caller's: going down the layers, the gradient of
  ``(node_energy_t, node_feats_out)`` with respect to ``(positions, node_feats)``,
  whose ghost rows are summed into their owners before the layer below. With zero
  shifts (ghosts as explicit image atoms) the virial is ``sum x (x) f`` over own and
  ghost atoms. ``empp_ff/testing/halo.py`` is a reference driver on fake domains.
* Attributes: ``halo_version`` (int) and ``halo_comm_dims`` (List[int], length
  ``num_interactions - 1``: entry k = d_{k+1}, the numbers per atom exchanged
  before layer k+1). ``metadata.json`` repeats them under ``"halo"``.
"""


from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch

from empp_ff._dtypes import torch_dtype
from empp_ff._elements import z_table
from empp_ff.export.input_checks import check_model_inputs
from empp_ff.export.model_file import HALO_VERSION, TORCHSCRIPT_FORMAT_VERSION


class ExportedPotential(torch.nn.Module):
    """One-structure TorchScript wrapper around ``empp_ff.model.Potential``."""

    def __init__(self, potential: torch.nn.Module, atomic_numbers: List[int], model_dtype: str):
        super().__init__()
        self.potential = potential
        self.r_max = float(potential.r_max)
        self.num_interactions = int(potential.num_interactions)
        self.atomic_numbers = [int(z) for z in atomic_numbers]
        self.model_dtype = str(model_dtype)
        self.format_version = int(TORCHSCRIPT_FORMAT_VERSION)
        self.register_buffer("known_species", z_table(self.atomic_numbers, True, False, torch.bool))
        # A dtype carrier: ``.dtype`` of this buffer is the model dtype in TorchScript.
        self.register_buffer("dtype_ref", torch.zeros(0, dtype=torch_dtype(model_dtype)))

    def forward(
        self,
        positions: torch.Tensor,
        atomic_numbers: torch.Tensor,
        edge_index: torch.Tensor,
        shifts: torch.Tensor,
        n_local: int,
        compute_virial: bool,
    ) -> Dict[str, torch.Tensor]:
        num_atoms = positions.shape[0]
        check_model_inputs(positions, atomic_numbers, edge_index, shifts, n_local, self.known_species)
        dtype = self.dtype_ref.dtype
        positions = positions.to(dtype)
        shifts = shifts.to(dtype)
        batch = torch.zeros(num_atoms, dtype=torch.long, device=positions.device)
        energy_mask: Optional[torch.Tensor] = None
        if n_local < num_atoms:
            energy_mask = torch.arange(num_atoms, device=positions.device) < n_local
        out = self.potential(
            positions,
            atomic_numbers,
            edge_index,
            shifts,
            batch,
            1,
            True,
            compute_virial,
            False,
            energy_mask,
        )
        result: Dict[str, torch.Tensor] = {
            "energy": out["energy"][0],
            "node_energy": out["node_energy"],
            "forces": out["forces"],
        }
        if compute_virial:
            result["virial"] = out["virial"][0]
        return result


class LayerwiseExportedPotential(ExportedPotential):
    """``ExportedPotential`` plus the layer-wise entry points (module docstring)."""

    def __init__(self, potential: torch.nn.Module, atomic_numbers: List[int], model_dtype: str):
        super().__init__(potential, atomic_numbers, model_dtype)
        self.halo_version = int(HALO_VERSION)
        self.halo_comm_dims = halo_comm_dims(potential)

    @torch.jit.export
    def halo_prepare(
        self,
        positions: torch.Tensor,
        atomic_numbers: torch.Tensor,
        edge_index: torch.Tensor,
        shifts: torch.Tensor,
        n_local: int,
    ) -> List[torch.Tensor]:
        check_model_inputs(positions, atomic_numbers, edge_index, shifts, n_local, self.known_species)
        if edge_index.shape[1] > 0 and int(edge_index[1].max()) >= n_local:
            raise ValueError("halo_prepare: every edge's receiver (edge_index[1]) must be one of the n_local atoms")
        dtype = self.dtype_ref.dtype
        return self.potential.backbone.halo_context(positions.to(dtype), atomic_numbers, edge_index, shifts.to(dtype))

    @torch.jit.export
    def halo_layer(
        self, t: int, ctx: List[torch.Tensor], node_feats: Optional[torch.Tensor], n_local: int
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        if t < 0 or t >= self.num_interactions:
            raise ValueError("halo_layer: t must lie in [0, num_interactions)")
        if (t == 0) != (node_feats is None):
            raise ValueError("halo_layer: node_feats must be None for t = 0 and given for t > 0")
        if node_feats is not None:
            if node_feats.shape[0] != ctx[1].shape[0]:  # ctx[1]: one row per node (Backbone.halo_context)
                raise ValueError("halo_layer: node_feats needs one row per node (own atoms, then ghosts)")
            node_feats = node_feats.to(self.dtype_ref.dtype)
        return self.potential.backbone.halo_layer(t, ctx, node_feats, n_local)


def halo_comm_dims(potential: torch.nn.Module) -> List[int]:
    """Numbers per atom that a halo exchange carries before layers 1..L-1."""
    return potential.backbone.layer_input_dims()[1:]
