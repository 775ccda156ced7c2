"""A ``Potential`` that ``torch.fx``'s symbolic tracer can follow (for AOTInductor).

Two pieces of e3nn 0.4.4 run as TorchScript even in eager mode, and TorchScript
code run under ``make_fx(tracing_mode="symbolic")`` turns every symbolic size
into the example's constant (the compiled graph would then accept only that
number of atoms and edges):

* the codegen'd fx modules of ``Linear``/``TensorProduct`` are scripted at
  construction when ``jit_script_fx`` is on (e3nn's default);
* ``o3._spherical_harmonics._spherical_harmonics`` is a ``@torch.jit.script``
  function (its Python original is kept as ``_torchdynamo_inline``).

:func:`traceable_e3nn` switches both to Python for the duration of a ``with``
block and restores them afterwards; :func:`build_traceable_potential` rebuilds
a potential from its spec and weights inside it. The result computes exactly
what the training/TorchScript potential computes.
"""

from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator

import torch

from empp_ff.model._imports import import_e3nn_o3


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


def build_traceable_potential(spec: Dict[str, Any], state_dict: Dict[str, torch.Tensor]):
    """A ``Potential`` of ``spec`` (a BackboneSpec dict) holding ``state_dict``, built
    without TorchScript pieces; eval mode, parameters frozen. Trace it inside
    :func:`traceable_e3nn` as well (the spherical harmonics are looked up per call)."""
    from empp_ff.model.backbone import build_backbone
    from empp_ff.model.potential import Potential
    from empp_ff.model.spec import BackboneSpec

    with traceable_e3nn():
        potential = Potential(build_backbone(BackboneSpec.from_dict(dict(spec))))
    potential.load_state_dict(state_dict)
    for p in potential.parameters():
        p.requires_grad_(False)
    return potential.eval()
