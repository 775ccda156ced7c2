"""MACE backbone adapter: the only place in empp-ff that builds mace modules.

The backbone is assembled from mace-torch's blocks (a ScaleShiftMACE built with
``keep_last_layer_irreps=True``) but runs its own forward so that

* it takes plain tensors (atomic numbers, edge list, Cartesian shifts) instead
  of mace's data dictionary, which keeps it TorchScript-able for export;
* it returns per-atom energies *and* the full last-layer equivariant node
  features (``0e+1o(+2e...)``) that the EMPP position head needs;
* callers can add per-graph conditioning vectors into each interaction's
  message path (the input of ``linear_up``), which EMPP's masked passes use.
  Conditioning is a context manager that installs forward pre-hooks and removes
  them on exit, so outside it the computation is exactly mace's.

What every backbone offers is :class:`~empp_ff.model.interface.Backbone`; what MACE
declares about itself (its hyper-parameters, packages and named parts) is ``DESCRIPTION``.

Two pieces of e3nn 0.4.4 run as TorchScript even in eager mode, and TorchScript
code run under ``make_fx(tracing_mode="symbolic")`` turns every symbolic size
into the example's constant (the compiled graph would then accept only that
number of atoms and edges):

* the codegen'd fx modules of ``Linear``/``TensorProduct`` are scripted at
  construction when ``jit_script_fx`` is on (e3nn's default);
* ``o3._spherical_harmonics._spherical_harmonics`` is a ``@torch.jit.script``
  function (its Python original is kept as ``_torchdynamo_inline``).

:func:`traceable_e3nn` (``MACEBackbone.traceable()``) switches both to Python for the
duration of a ``with`` block and restores them afterwards.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from empp_ff._dtypes import torch_dtype
from empp_ff._elements import z_table
from empp_ff.model._imports import import_e3nn_o3, import_mace_modules, quiet_torchscript_build
from empp_ff.model.architecture import BackboneArchitecture
from empp_ff.model.description import BackboneDescription
from empp_ff.model.interface import Backbone, default_dtype
from empp_ff.model.irreps import irreps_up_to
from empp_ff.model.transfer import ElementLayout, e3nn_weight_layout, whole_tensor_layout


@dataclass
class MACEArchitecture(BackboneArchitecture):
    """MACE's hyper-parameters (``model.*``): ``num_interactions`` interactions of hidden
    irreps ``num_channels x 0e + ... + num_channels x max_L``, each with a symmetric
    contraction of body order ``correlation``; edge spherical harmonics up to ``max_ell``,
    ``num_bessel`` radial Bessel functions with a polynomial cutoff envelope of degree
    ``num_polynomial_cutoff``, the radial MLP's hidden widths ``radial_mlp``, the last
    readout's hidden irreps ``mlp_irreps``."""

    max_L: int = 1
    num_interactions: int = 2
    correlation: int = 3
    max_ell: int = 3
    num_bessel: int = 8
    num_polynomial_cutoff: int = 5
    radial_mlp: List[int] = field(default_factory=lambda: [64, 64, 64])
    mlp_irreps: str = "16x0e"

    def checks(self) -> List[Tuple[bool, str]]:
        return super().checks() + [
            (self.max_L >= 0, "max_L must be >= 0"),
            (self.num_interactions >= 1, "num_interactions must be >= 1"),
            (self.correlation >= 1, "correlation must be >= 1"),
        ]

    def describe(self) -> str:
        return f"MACE {self.num_channels}ch L={self.max_L} correlation {self.correlation} max_ell {self.max_ell}"


@contextlib.contextmanager
def traceable_e3nn() -> Iterator[None]:
    """e3nn without TorchScript (codegen modules and spherical harmonics in Python)."""
    import_e3nn_o3()
    import e3nn
    import e3nn.o3._spherical_harmonics as sh

    previous_flag = e3nn.get_optimization_defaults()["jit_script_fx"]
    previous_fn = sh._spherical_harmonics
    e3nn.set_optimization_defaults(jit_script_fx=False)
    sh._spherical_harmonics = getattr(previous_fn, "_torchdynamo_inline", previous_fn)
    try:
        yield
    finally:
        e3nn.set_optimization_defaults(jit_script_fx=previous_flag)
        sh._spherical_harmonics = previous_fn


def _build_mace(spec):
    modules = import_mace_modules()
    o3 = import_e3nn_o3()
    hidden = o3.Irreps(irreps_up_to(spec.num_channels, spec.max_L))
    return modules.ScaleShiftMACE(
        r_max=spec.r_max,
        num_bessel=spec.num_bessel,
        num_polynomial_cutoff=spec.num_polynomial_cutoff,
        max_ell=spec.max_ell,
        interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        interaction_cls_first=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        num_interactions=spec.num_interactions,
        num_elements=len(spec.atomic_numbers),
        hidden_irreps=hidden,
        MLP_irreps=o3.Irreps(spec.mlp_irreps),
        atomic_energies=np.asarray(spec.atomic_energies, dtype=np.float64),
        avg_num_neighbors=spec.avg_num_neighbors,
        atomic_numbers=list(spec.atomic_numbers),
        correlation=spec.correlation,
        gate=torch.nn.functional.silu,
        radial_MLP=list(spec.radial_mlp),
        atomic_inter_scale=spec.scale,
        atomic_inter_shift=spec.shift,
        keep_last_layer_irreps=True,
    )


class MACEBackbone(Backbone):
    """Per-atom energies and last-layer node features from a MACE network."""

    def __init__(self, spec):
        super().__init__(spec)
        dtype = torch_dtype(spec.dtype)
        with default_dtype(dtype), quiet_torchscript_build():
            self.mace = _build_mace(spec)
        self.mace.to(dtype)
        self.num_elements = len(spec.atomic_numbers)
        self.r_max = float(spec.r_max)
        self.num_interactions = int(spec.num_interactions)
        z_to_index = z_table(spec.atomic_numbers, torch.arange(len(spec.atomic_numbers)), -1, torch.long)
        self.register_buffer("z_to_index", z_to_index, persistent=False)

    # -- description -----------------------------------------------------------------
    @torch.jit.unused
    def set_reference_energies(self, energies) -> None:
        """Replace the per-element reference energies (eV, in ``atomic_numbers`` order):
        the buffer the forward uses and the spec that rebuilds the model."""
        self._write_reference_energies(self.mace.atomic_energies_fn.atomic_energies, energies)

    @torch.jit.unused
    def element_indexed_parameters(self) -> Dict[str, ElementLayout]:
        """The node embedding (a linear map of the element one-hot), every interaction's
        ``skip_tp`` (node features ⊗ element one-hot) and the products' symmetric contraction
        weights ([elements, params, channels])."""
        one_hot = f"{self.num_elements}x0e"
        layouts = {}
        for module_name, module in self.named_modules():
            for name, tensor in module.named_parameters(recurse=False):
                full = f"{module_name}.{name}"
                skip_tp = module_name.endswith(".skip_tp") and str(getattr(module, "irreps_in2", "")) == one_hot
                if name == "weight" and skip_tp:
                    layouts[full] = e3nn_weight_layout(module, axis=1)
                elif (name == "weight" and module_name.endswith("node_embedding.linear")
                      and str(getattr(module, "irreps_in", "")) == one_hot):
                    layouts[full] = e3nn_weight_layout(module, axis=0)
                elif (".symmetric_contractions." in f".{module_name}." and tensor.dim() == 3
                      and tensor.shape[0] == self.num_elements):
                    layouts[full] = whole_tensor_layout(tensor, axis=0)
        return layouts

    @torch.jit.unused
    def feature_irreps(self):
        """Irreps of the node features returned by ``forward`` (last layer)."""
        return self.mace.products[-1].linear.irreps_out

    @torch.jit.unused
    def message_irreps(self) -> list:
        """Irreps of each interaction's message-path input (where conditioning goes)."""
        return [inter.node_feats_irreps for inter in self.mace.interactions]

    # -- computation -------------------------------------------------------------------
    def forward(
        self,
        positions: torch.Tensor,
        atomic_numbers: torch.Tensor,
        edge_index: torch.Tensor,
        shifts: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Return (node_energy [N] in eV, node_feats [N, dim(feature_irreps)])."""
        node_attrs, edge_attrs, edge_feats, cutoff = self.geometry(positions, atomic_numbers, edge_index, shifts)
        num_nodes = node_attrs.shape[0]
        node_heads = torch.zeros(num_nodes, dtype=torch.long, device=node_attrs.device)
        node_e0 = self.mace.atomic_energies_fn(node_attrs)[:, 0]
        node_feats = self.mace.node_embedding(node_attrs)
        node_es = torch.zeros_like(node_e0)
        for i, readout in enumerate(self.mace.readouts):
            node_feats = self._interaction(i, node_attrs, node_feats, edge_attrs, edge_feats, edge_index, cutoff,
                                           num_nodes)
            node_es = node_es + readout(node_feats, node_heads)[:, 0]
        node_inter_es = self.mace.scale_shift(node_es, node_heads)
        return node_e0 + node_inter_es, node_feats

    def geometry(
        self,
        positions: torch.Tensor,
        atomic_numbers: torch.Tensor,
        edge_index: torch.Tensor,
        shifts: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """Per-node one-hot species and per-edge spherical harmonics, radial
        features and cutoff values: (node_attrs, edge_attrs, edge_feats, cutoff)."""
        species = self.z_to_index[atomic_numbers]
        # one-hot by comparison: one_hot checks its input's values, which make_fx cannot trace
        # (the compiled training step); the same 0/1 values
        element_ids = torch.arange(self.num_elements, device=species.device)
        node_attrs = (species.unsqueeze(-1) == element_ids).to(positions.dtype)
        # index_select (not fancy indexing): its backward is index_add, which is
        # deterministic on CPU, so resumed runs reproduce uninterrupted ones bit for bit.
        vectors = positions.index_select(0, edge_index[1]) - positions.index_select(0, edge_index[0]) + shifts
        lengths = torch.linalg.norm(vectors, dim=-1, keepdim=True)
        edge_attrs = self.mace.spherical_harmonics(vectors)
        edge_feats, cutoff = self.mace.radial_embedding(lengths, node_attrs, edge_index, self.mace.atomic_numbers)
        return node_attrs, edge_attrs, edge_feats, cutoff

    def _interaction(
        self,
        t: int,
        node_attrs: torch.Tensor,
        node_feats: torch.Tensor,
        edge_attrs: torch.Tensor,
        edge_feats: torch.Tensor,
        edge_index: torch.Tensor,
        cutoff: Optional[torch.Tensor],
        n_receivers: int,
    ) -> torch.Tensor:
        """Interaction + product ``t``: the new features of nodes 0..n_receivers-1
        (every edge's receiver must be among them)."""
        out = node_feats[:0]
        for i, (interaction, product) in enumerate(zip(self.mace.interactions, self.mace.products)):
            if i == t:  # TorchScript cannot index a ModuleList with a variable
                messages, sc = interaction(
                    node_attrs=node_attrs,
                    node_feats=node_feats,
                    edge_attrs=edge_attrs,
                    edge_feats=edge_feats,
                    edge_index=edge_index,
                    cutoff=cutoff,
                    first_layer=(i == 0),
                )
                receiver_attrs = node_attrs
                if n_receivers < node_attrs.shape[0]:
                    messages = messages[:n_receivers]
                    receiver_attrs = node_attrs[:n_receivers]
                    if sc is not None:
                        sc = sc[:n_receivers]
                out = product(node_feats=messages, sc=sc, node_attrs=receiver_attrs)
        return out

    def layer(
        self,
        t: int,
        node_attrs: torch.Tensor,
        node_feats: Optional[torch.Tensor],
        edge_attrs: torch.Tensor,
        edge_feats: torch.Tensor,
        edge_index: torch.Tensor,
        cutoff: Optional[torch.Tensor],
        n_receivers: int,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Interaction ``t`` alone (layer-wise evaluation, e.g. LAMMPS halo mode).

        ``node_feats``: layer t's input for every node (``None`` for t = 0: the
        species embedding). Returns the new features of nodes 0..n_receivers-1 and
        their energy contribution (eV): summed over t it is ``forward``'s node
        energy (layer 0 carries the reference energies and the shift)."""
        if node_feats is None:
            node_feats = self.mace.node_embedding(node_attrs)
        out = self._interaction(t, node_attrs, node_feats, edge_attrs, edge_feats, edge_index, cutoff, n_receivers)
        receiver_attrs = node_attrs[:n_receivers]
        heads = torch.zeros(n_receivers, dtype=torch.long, device=node_attrs.device)
        energy = torch.zeros(n_receivers, dtype=node_attrs.dtype, device=node_attrs.device)
        for i, readout in enumerate(self.mace.readouts):
            if i == t:
                energy = torch.atleast_1d(self.mace.scale_shift.scale)[heads] * readout(out, heads)[:, 0]
        if t == 0:
            energy = energy + torch.atleast_1d(self.mace.scale_shift.shift)[heads]
            energy = energy + self.mace.atomic_energies_fn(receiver_attrs)[:, 0]
        return out, energy

    def halo_context(
        self,
        positions: torch.Tensor,
        atomic_numbers: torch.Tensor,
        edge_index: torch.Tensor,
        shifts: torch.Tensor,
    ) -> List[torch.Tensor]:
        """``[edge_index, node_attrs, edge_attrs, edge_feats(, cutoff)]`` (:meth:`geometry`)."""
        node_attrs, edge_attrs, edge_feats, cutoff = self.geometry(positions, atomic_numbers, edge_index, shifts)
        ctx = [edge_index, node_attrs, edge_attrs, edge_feats]
        if cutoff is not None:
            ctx.append(cutoff)
        return ctx

    def halo_layer(
        self, t: int, ctx: List[torch.Tensor], node_feats: Optional[torch.Tensor], n_local: int
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        cutoff: Optional[torch.Tensor] = None
        if len(ctx) > 4:
            cutoff = ctx[4]
        return self.layer(t, ctx[1], node_feats, ctx[2], ctx[3], ctx[0], cutoff, n_local)

    @torch.jit.unused
    def layer_input_dims(self) -> list:
        """Width of each interaction's input node features (what a halo exchange
        carries per atom before that layer)."""
        return [int(inter.node_feats_irreps.dim) for inter in self.mace.interactions]

    # -- EMPP conditioning ------------------------------------------------------------
    @torch.jit.unused
    @contextlib.contextmanager
    def conditioning(
        self, per_layer: Sequence[Optional[torch.Tensor]], batch: torch.Tensor
    ) -> Iterator[None]:
        """Add ``per_layer[t][batch]`` to the message-path input of interaction t.

        ``per_layer[t]`` has shape [num_graphs, dim(message_irreps()[t])] or is None
        (no conditioning on that layer). The hooks exist only inside the ``with``
        block, so clean passes, evaluation and exported models never see them.
        """
        if len(per_layer) != len(self.mace.interactions):
            raise ValueError(
                f"conditioning needs one entry per interaction ({len(self.mace.interactions)}), "
                f"got {len(per_layer)}"
            )
        handles = []
        try:
            for interaction, vectors in zip(self.mace.interactions, per_layer):
                if vectors is None:
                    continue
                node_vectors = vectors[batch]

                def add(_module, args, node_vectors=node_vectors):
                    return (args[0] + node_vectors,) + tuple(args[1:])

                handles.append(interaction.linear_up.register_forward_pre_hook(add))
            yield
        finally:
            for handle in handles:
                handle.remove()

    @classmethod
    def traceable(cls):
        return traceable_e3nn()


DESCRIPTION = BackboneDescription(
    name="mace",
    architecture=MACEArchitecture,
    network=MACEBackbone,
    packages=("e3nn", "mace-torch"),
    reinit_parts={
        "embedding": ("node_embedding.",),
        "skip": (".skip_tp.",),
        "contractions": (".symmetric_contractions.",),
        "elements": ("node_embedding.", ".skip_tp.", ".symmetric_contractions."),
        "products": (".products.",),
        "readouts": (".readouts.",),
        "interactions": (".interactions.",),
    },
)
