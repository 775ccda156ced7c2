"""A ``Potential`` that ``torch.fx``'s symbolic tracer can follow (for AOTInductor).

Each backbone class says, with ``traceable()``, in which context a backbone built and
then traced can be followed by ``make_fx(tracing_mode="symbolic")`` with symbolic atom
and edge counts (MACE: e3nn's TorchScript pieces switched to Python,
``empp_ff.model.mace.traceable_e3nn``). :func:`build_traceable_potential` rebuilds a
potential from its spec and weights inside that context, and :func:`tracing` is the
context to trace it in. The result computes exactly what the training/TorchScript
potential computes.
"""

from __future__ import annotations

import contextlib
from typing import Any, Dict

import torch

from empp_ff.model.backbone import description
from empp_ff.model.potential import Potential
from empp_ff.model.spec import BackboneSpec


def tracing(spec: Dict[str, Any]) -> contextlib.AbstractContextManager:
    """The context in which the backbone of ``spec`` (a BackboneSpec dict) is traced."""
    return description(BackboneSpec.from_dict(dict(spec)).backbone).network.traceable()


def build_traceable_potential(spec: Dict[str, Any], state_dict: Dict[str, torch.Tensor]):
    """A ``Potential`` of ``spec`` (a BackboneSpec dict) holding ``state_dict``, built
    for tracing; eval mode, parameters frozen. Trace it inside :func:`tracing` as well
    (MACE's spherical harmonics are looked up per call)."""
    backbone_spec = BackboneSpec.from_dict(dict(spec))
    entry = description(backbone_spec.backbone)
    with entry.network.traceable():
        potential = Potential(entry.build(backbone_spec))
    potential.load_state_dict(state_dict)
    for p in potential.parameters():
        p.requires_grad_(False)
    return potential.eval()
