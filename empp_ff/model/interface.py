"""What a backbone is to the rest of empp-ff: the one base class every backbone subclasses.

A backbone maps a graph (positions, atomic numbers, an edge list with Cartesian shifts,
MACE's convention: ``edge_index[0]`` sender, ``edge_index[1]`` receiver, edge vector
``pos[receiver] - pos[sender] + shift``) to per-atom energies (eV) and equivariant node
features. Its users, and what each takes from it:

* ``Potential`` (energy, forces, virial; training and model files): ``forward``,
  ``r_max``, ``num_interactions``;
* the trainer, checkpoints and fine-tuning: ``spec`` / ``spec_dict`` (rebuild from JSON),
  ``element_indexed_parameters`` (weights carried over by atomic number);
* the per-epoch E0 refit: ``num_elements``, the ``z_to_index`` buffer,
  ``set_reference_energies``;
* EMPP and the denoising auxiliary: ``feature_irreps`` (the head's input),
  ``message_irreps`` and ``conditioning`` (label codes added to the masked copies);
* the model file's layer-wise (halo) entry points: ``halo_context``, ``halo_layer``,
  ``layer_input_dims``;
* the AOTInductor export: ``traceable`` (a context in which a rebuilt backbone can be
  traced symbolically).

``forward``, ``halo_context`` and ``halo_layer`` are compiled by TorchScript in every
model file; the rest is Python-only (``@torch.jit.unused``). What a backbone declares
about itself besides (its architecture's fields, packages, named parts) is its
``BackboneDescription`` (``empp_ff.model.description``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Build e3nn/mace modules in ``dtype`` (their constants follow the default
    dtype at construction) and restore the caller's default afterwards."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


class Backbone(torch.nn.Module):
    """Base class of the backbones (``model.backbone``), built from a ``BackboneSpec``
    (``spec``, kept as given). Subclasses set, in ``__init__``: ``r_max`` (Å),
    ``num_interactions`` (the message-passing steps: the receptive field is
    ``num_interactions × r_max``, and the model file's attribute of that name is what LAMMPS
    multiplies by r_max for a full ghost shell), ``num_elements`` and the buffer
    ``z_to_index`` (atomic number -> species index, −1 where unknown)."""

    # ``spec`` is a Python dataclass and ``spec_dict`` its JSON form: TorchScript must not try
    # to compile them. (No class-level annotations of the attributes above: TorchScript would
    # type them.)
    __jit_ignored_attributes__ = ["spec"]
    __jit_unused_properties__ = ["spec_dict"]

    def __init__(self, spec: Any):
        super().__init__()
        self.spec = spec

    @property
    def spec_dict(self) -> Dict[str, Any]:
        """``spec.to_dict()``: what a checkpoint and a model file's metadata record."""
        return self.spec.to_dict()

    def _write_reference_energies(self, buffer: torch.Tensor, energies) -> None:
        """``set_reference_energies`` of a backbone whose forward reads them from ``buffer``: the
        buffer and ``spec`` (which rebuilds the model) both get ``energies``."""
        values = torch.as_tensor(list(energies), dtype=torch.float64).reshape(buffer.shape)
        with torch.no_grad():
            buffer.copy_(values.to(buffer.dtype))
        self.spec = dataclasses.replace(self.spec, atomic_energies=[float(v) for v in values.reshape(-1)])

    # -- computation (TorchScript) ----------------------------------------------------
    def forward(
        self,
        positions: torch.Tensor,
        atomic_numbers: torch.Tensor,
        edge_index: torch.Tensor,
        shifts: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(node_energy [N] in eV, node_feats [N, dim(feature_irreps())])."""
        raise NotImplementedError

    def halo_context(
        self,
        positions: torch.Tensor,
        atomic_numbers: torch.Tensor,
        edge_index: torch.Tensor,
        shifts: torch.Tensor,
    ) -> List[torch.Tensor]:
        """What every layer of one halo evaluation shares (per-edge geometry, species),
        differentiable with respect to ``positions``. ``ctx[0]`` is the edge list and
        ``ctx[1]`` has one row per node (own atoms, then ghosts); the rest is the
        backbone's own. Every edge's receiver is an own atom (checked by the caller)."""
        raise NotImplementedError

    def halo_layer(
        self, t: int, ctx: List[torch.Tensor], node_feats: Optional[torch.Tensor], n_local: int
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Message-passing step ``t`` alone: ``node_feats`` is None for t = 0, else step
        t−1's output for every node. Returns the new features of nodes 0..n_local−1 and
        their energy share (eV); summed over t it is ``forward``'s node energy."""
        raise NotImplementedError

    # -- description and set-up (Python only) -----------------------------------------
    @torch.jit.unused
    def feature_irreps(self):
        """e3nn irreps (O(3) parity) of the node features ``forward`` returns."""
        raise NotImplementedError

    @torch.jit.unused
    def message_irreps(self) -> list:
        """Irreps of what ``conditioning`` adds, one entry per conditioned layer (MACE: every
        interaction; a backbone may leave a step, e.g. an input embedding, unconditioned)."""
        raise NotImplementedError

    @torch.jit.unused
    def layer_input_dims(self) -> list:
        """Numbers per atom entering each step (what a halo exchange carries before it)."""
        raise NotImplementedError

    @torch.jit.unused
    def set_reference_energies(self, energies) -> None:
        """Replace the per-element reference energies (eV, in ``atomic_numbers`` order)
        in the forward's buffer and in ``spec``."""
        raise NotImplementedError

    @torch.jit.unused
    def element_indexed_parameters(self) -> Dict[str, Any]:
        """{parameter name (relative to this module): ``empp_ff.model.transfer.ElementLayout``}
        for every parameter indexed by the species list (``spec.atomic_numbers``), which
        fine-tuning across element sets maps by atomic number. Empty by default: a backbone whose
        weights do not depend on the species list (tables by atomic number) needs nothing."""
        return {}

    @torch.jit.unused
    def conditioning(
        self, per_layer: Sequence[Optional[torch.Tensor]], batch: torch.Tensor
    ) -> contextlib.AbstractContextManager:
        """A context in which ``per_layer[t][batch]`` is added at step t (entries
        [num_graphs, dim(message_irreps()[t])] or None). Nothing of it may remain outside
        the ``with`` block: clean passes, evaluation and model files never see it."""
        raise NotImplementedError

    @classmethod
    def traceable(cls) -> contextlib.AbstractContextManager:
        """A context in which a backbone built, and then traced, is followed by
        ``make_fx(tracing_mode="symbolic")`` with symbolic atom and edge counts."""
        return contextlib.nullcontext()
