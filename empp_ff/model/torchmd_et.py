"""torchmd-net's Equivariant Transformer as an empp-ff backbone (``model.backbone: torchmd_et``).

The ET (Thölke & De Fabritiis, ICLR 2022) carries per atom scalars ``x [N, C]`` and
Cartesian vectors ``v [N, 3, C]``; each layer is torchmd-net's
``EquivariantMultiHeadAttention``. This module builds torchmd-net's blocks and runs its
own forward on empp-ff's edge list (sender ``edge_index[0]``, receiver
``edge_index[1]``, vector ``pos[receiver] - pos[sender] + shift``), as ``mace.py`` does
for mace's blocks. The choice and its measurements: ``docs/backbone_choice.md``.

* Message-passing steps: the neighbour embedding, then ``spec.num_interactions``
  attention layers, so ``num_interactions`` (the receptive field in r_max, and the
  model file's attribute) is one more than the spec's.
* Self loops (zero vector, distance 0), as torchmd-net's own neighbour list adds them,
  are appended for every node; the attention uses them, the neighbour embedding not.
* ``vector_cutoff=True``: the values, not only the attention weights, go to zero at
  r_max, so the energy is smooth there.
* Per-atom energy: E0[species] + shift + scale · MLP(LayerNorm(x)), the readout of
  torchmd-net's ``Scalar`` output model (SiLU MLP C → C/2 → 1) with empp-ff's scaling.
* Node features (EMPP's head): ``[LayerNorm(x) ‖ v]`` as e3nn ``C x 0e + C x 1o``
  (mul-major; a 1o is (x, y, z) in e3nn 0.4.4).
* EMPP conditioning: a forward pre-hook on each attention layer adds the code to the
  layer's input (x, v) only; the residual stream keeps the unconditioned features, as
  EMPP's reference code does on Equiformer.
* Elements: embedded by atomic number (tables of ``MAX_ATOMIC_NUMBER + 1`` rows), so the
  weights do not depend on the species list and fine-tuning across element sets copies
  them as they are (no ``element_indexed_parameters``).

What the ET declares about itself (hyper-parameters, packages, named parts) is ``DESCRIPTION``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple

import torch

from empp_ff._dtypes import torch_dtype
from empp_ff._elements import MAX_ATOMIC_NUMBER, z_table
from empp_ff.model._imports import import_e3nn_o3, import_torchmdnet_et
from empp_ff.model.architecture import BackboneArchitecture
from empp_ff.model.description import BackboneDescription
from empp_ff.model.interface import Backbone

DISTANCE_INFLUENCE = ("keys", "values", "both", "none")


@dataclass
class TorchMDETArchitecture(BackboneArchitecture):
    """The ET's hyper-parameters (``model.*``): ``num_interactions`` attention layers (the
    neighbour embedding is one more message-passing step) of ``num_heads`` heads over
    ``num_channels`` channels, ``num_rbf`` exp-normal radial functions, and where the distance
    enters the attention (``distance_influence``: torchmd-net's option)."""

    num_interactions: int = 2
    num_heads: int = 8
    num_rbf: int = 32
    distance_influence: str = "both"

    def checks(self) -> List[Tuple[bool, str]]:
        return super().checks() + [
            (self.num_interactions >= 1, "num_interactions must be >= 1"),
            (self.num_heads >= 1, "num_heads must be >= 1"),
            (self.num_rbf >= 1, "num_rbf must be >= 1"),
            (self.distance_influence in DISTANCE_INFLUENCE,
             f"distance_influence must be one of {', '.join(DISTANCE_INFLUENCE)}, got {self.distance_influence!r}"),
            (self.num_channels % max(self.num_heads, 1) == 0,
             f"num_channels ({self.num_channels}) must be a multiple of num_heads ({self.num_heads}) "
             "for the torchmd_et backbone"),
        ]

    def describe(self) -> str:
        return (f"torchmd_et (torchmd-net Equivariant Transformer) {self.num_channels}ch, "
                f"{self.num_interactions} attention layers, {self.num_heads} heads")


class TorchMDETBackbone(Backbone):
    """Per-atom energies and (scalar, vector) node features from torchmd-net's ET blocks."""

    def __init__(self, spec):
        super().__init__(spec)
        attention, smearing, neighbour_embedding, activations = import_torchmdnet_et()
        dtype = torch_dtype(spec.dtype)
        c = int(spec.num_channels)
        max_z = MAX_ATOMIC_NUMBER + 1
        self.channels = c
        self.r_max = float(spec.r_max)
        self.num_layers = int(spec.num_interactions)
        self.num_interactions = self.num_layers + 1  # the neighbour embedding is one more step
        self.num_elements = len(spec.atomic_numbers)
        self.register_buffer("z_to_index", z_table(spec.atomic_numbers, torch.arange(self.num_elements), -1,
                                                   torch.long), persistent=False)
        self.embedding = torch.nn.Embedding(max_z, c, dtype=dtype)
        self.radial = smearing(0.0, self.r_max, spec.num_rbf, True, dtype=dtype)
        self.neighbour_embedding = neighbour_embedding(c, spec.num_rbf, 0.0, self.r_max, max_z, dtype)
        self.layers = torch.nn.ModuleList(
            attention(c, spec.num_rbf, spec.distance_influence, spec.num_heads, activations["silu"], "silu", 0.0,
                      self.r_max, True, dtype)
            for _ in range(self.num_layers))
        self.out_norm = torch.nn.LayerNorm(c, dtype=dtype)
        self.readout = torch.nn.Sequential(torch.nn.Linear(c, c // 2, dtype=dtype), torch.nn.SiLU(),
                                           torch.nn.Linear(c // 2, 1, dtype=dtype))
        self.register_buffer("atomic_energies", torch.tensor(list(spec.atomic_energies), dtype=dtype))
        self.register_buffer("scale", torch.tensor(float(spec.scale), dtype=dtype))
        self.register_buffer("shift", torch.tensor(float(spec.shift), dtype=dtype))

    # -- description -----------------------------------------------------------------
    @torch.jit.unused
    def set_reference_energies(self, energies) -> None:
        self._write_reference_energies(self.atomic_energies, energies)

    @torch.jit.unused
    def feature_irreps(self):
        return import_e3nn_o3().Irreps(f"{self.channels}x0e+{self.channels}x1o")

    @torch.jit.unused
    def message_irreps(self) -> list:
        """One per attention layer (the neighbour embedding takes no conditioning)."""
        return [self.feature_irreps() for _ in range(self.num_layers)]

    @torch.jit.unused
    def layer_input_dims(self) -> list:
        """Step 0 reads the atomic number; step 1 the scalars; later steps scalars and vectors."""
        return [1, self.channels] + [4 * self.channels] * (self.num_layers - 1)

    # -- computation -------------------------------------------------------------------
    def forward(
        self,
        positions: torch.Tensor,
        atomic_numbers: torch.Tensor,
        edge_index: torch.Tensor,
        shifts: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Return (node_energy [N] in eV, node_feats [N, 4C]: ``C x 0e + C x 1o``)."""
        n = positions.shape[0]
        edges, r, d, f = self.geometry(positions, edge_index, shifts)
        x = self._embed(atomic_numbers, edges, r, f, n)
        v = torch.zeros(n, 3, self.channels, dtype=x.dtype, device=x.device)
        for t in range(self.num_layers):
            x, v = self._attend(t, x, v, edges, r, f, d, n)
        x = self.out_norm(x)
        energy = self._reference_energy(atomic_numbers) + self.scale * self.readout(x)[:, 0]
        return energy, torch.cat([x, v.transpose(1, 2).reshape(n, 3 * self.channels)], dim=1)

    def geometry(
        self, positions: torch.Tensor, edge_index: torch.Tensor, shifts: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The edges followed by one self loop per node, their lengths, unit vectors
        (zero for the loops) and radial features: (edges [2, E+N], r, d [E+N, 3], f)."""
        n = positions.shape[0]
        vectors = positions.index_select(0, edge_index[1]) - positions.index_select(0, edge_index[0]) + shifts
        lengths = torch.linalg.norm(vectors, dim=-1)
        loops = torch.arange(n, dtype=edge_index.dtype, device=edge_index.device)
        edges = torch.cat([edge_index, torch.stack([loops, loops])], dim=1)
        zeros = torch.zeros(n, dtype=positions.dtype, device=positions.device)
        r = torch.cat([lengths, zeros])
        d = torch.cat([vectors / lengths[:, None], torch.zeros(n, 3, dtype=positions.dtype, device=positions.device)])
        return edges, r, d, self.radial(r)

    def _reference_energy(self, atomic_numbers: torch.Tensor) -> torch.Tensor:
        return self.atomic_energies[self.z_to_index[atomic_numbers]] + self.shift

    def _embed(self, atomic_numbers: torch.Tensor, edges: torch.Tensor, r: torch.Tensor, f: torch.Tensor,
               n_receivers: int) -> torch.Tensor:
        """torchmd-net's NeighborEmbedding, composed from its parts (its forward branches on
        data, which a symbolic trace cannot follow), aggregating into the receivers."""
        n_edges = edges.shape[1] - atomic_numbers.shape[0]  # the self loops come last
        ne = self.neighbour_embedding
        senders, receivers = edges[0, :n_edges], edges[1, :n_edges]
        w = ne.distance_proj(f[:n_edges]) * ne.cutoff(r[:n_edges])[:, None]
        messages = w * ne.embedding(atomic_numbers).index_select(0, senders)
        x = self.embedding(atomic_numbers)
        x = ne.combine(torch.cat([x, torch.zeros_like(x).index_add(0, receivers, messages)], dim=1))
        return x[:n_receivers]

    def _attend(self, t: int, x: torch.Tensor, v: torch.Tensor, edges: torch.Tensor, r: torch.Tensor,
                f: torch.Tensor, d: torch.Tensor, n_receivers: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Attention layer ``t`` (query at the receiver, key and value at the sender) with the
        residual update; the new (x, v) of nodes 0..n_receivers-1."""
        x_out, v_out = x[:n_receivers], v[:n_receivers]
        for i, layer in enumerate(self.layers):
            if i == t:  # TorchScript cannot index a ModuleList with a variable
                dx, dv = layer(x, v, edges, r, f, d)
                x_out = x_out + dx[:n_receivers]
                v_out = v_out + dv[:n_receivers]
        return x_out, v_out

    # -- layer-wise (halo) evaluation --------------------------------------------------
    def halo_context(
        self,
        positions: torch.Tensor,
        atomic_numbers: torch.Tensor,
        edge_index: torch.Tensor,
        shifts: torch.Tensor,
    ) -> List[torch.Tensor]:
        """``[edges with self loops, atomic_numbers [N, 1], r, d, f]`` (:meth:`geometry`)."""
        edges, r, d, f = self.geometry(positions, edge_index, shifts)
        return [edges, atomic_numbers[:, None], r, d, f]

    def halo_layer(
        self, t: int, ctx: List[torch.Tensor], node_feats: Optional[torch.Tensor], n_local: int
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Step 0: the neighbour embedding (out: x, C numbers; energy: E0 + shift); step t ≥ 1:
        attention layer t − 1 (in: x, or x and v flattened as [N, C + 3C]; out: x and v; the
        last step adds the readout)."""
        edges, numbers, r, d, f = ctx[0], ctx[1][:, 0], ctx[2], ctx[3], ctx[4]
        c = self.channels
        # Every step's energy stays in the autograd graph (the halo drivers differentiate it);
        # the steps without a readout add 0 · (their features).
        if node_feats is None:  # t == 0 (the caller checks)
            x0 = self._embed(numbers, edges, r, f, n_local)
            return x0, self._reference_energy(numbers[:n_local]) + 0.0 * x0.sum(dim=1)
        n = node_feats.shape[0]
        x = node_feats[:, :c]
        if node_feats.shape[1] > c:
            v = node_feats[:, c:].reshape(n, 3, c)
        else:
            v = torch.zeros(n, 3, c, dtype=node_feats.dtype, device=node_feats.device)
        x, v = self._attend(t - 1, x, v, edges, r, f, d, n_local)
        if t == self.num_layers:
            energy = self.scale * self.readout(self.out_norm(x))[:, 0]
        else:
            energy = 0.0 * x.sum(dim=1)
        return torch.cat([x, v.reshape(n_local, 3 * c)], dim=1), energy

    # -- EMPP conditioning ------------------------------------------------------------
    @torch.jit.unused
    @contextlib.contextmanager
    def conditioning(
        self, per_layer: Sequence[Optional[torch.Tensor]], batch: torch.Tensor
    ) -> Iterator[None]:
        """Add ``per_layer[t][batch]`` (``C x 0e + C x 1o``) to the input (x, v) of attention
        layer t; the hooks exist only inside the ``with`` block."""
        if len(per_layer) != self.num_layers:
            raise ValueError(f"conditioning needs one entry per attention layer ({self.num_layers}), "
                             f"got {len(per_layer)}")
        c = self.channels
        handles = []
        try:
            for layer, vectors in zip(self.layers, per_layer):
                if vectors is None:
                    continue
                node_vectors = vectors[batch]
                scalars = node_vectors[:, :c]
                cartesian = node_vectors[:, c:].reshape(-1, c, 3).transpose(1, 2)

                def add(_module, args, scalars=scalars, cartesian=cartesian):
                    return (args[0] + scalars, args[1] + cartesian) + tuple(args[2:])

                handles.append(layer.register_forward_pre_hook(add))
            yield
        finally:
            for handle in handles:
                handle.remove()


_ET_EMBEDDINGS = ("backbone.embedding.", "backbone.neighbour_embedding.embedding.")

DESCRIPTION = BackboneDescription(
    name="torchmd_et",
    architecture=TorchMDETArchitecture,
    network=TorchMDETBackbone,
    packages=("e3nn", "torchmd-net"),
    # Its only element-indexed parameters are the two embedding tables (the atom's own and
    # the neighbour embedding's).
    reinit_parts={
        "embedding": _ET_EMBEDDINGS,
        "elements": _ET_EMBEDDINGS,
        "readouts": ("backbone.readout.", "backbone.out_norm."),
        "interactions": ("backbone.layers.", "backbone.neighbour_embedding."),
    },
)
