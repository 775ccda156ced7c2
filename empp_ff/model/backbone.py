"""The backbones by name (``model.backbone``), and the one factory that builds them.

Every backbone subclasses :class:`~empp_ff.model.interface.Backbone`; the names are
defined once, in ``empp_ff.model.spec.BACKBONE_NAMES``, which a spec is validated
against. ``MACEBackbone`` and ``default_dtype`` are re-exported for existing imports.
"""

from __future__ import annotations

from typing import Type

from empp_ff.model.interface import Backbone, default_dtype
from empp_ff.model.mace import MACEBackbone
from empp_ff.model.spec import BACKBONE_NAMES, BackboneSpec

__all__ = ["Backbone", "MACEBackbone", "backbone_class", "build_backbone", "default_dtype"]


def backbone_class(name: str) -> Type[Backbone]:
    """The class of backbone ``name`` (one of ``BACKBONE_NAMES``). Optional backbones are
    imported here, when asked for, so that their packages load only for them."""
    if name == "mace":
        return MACEBackbone
    if name == "torchmd_et":
        from empp_ff.model.torchmd_et import TorchMDETBackbone

        return TorchMDETBackbone
    raise ValueError(f"unknown backbone {name!r}; known: {', '.join(BACKBONE_NAMES)}")


def build_backbone(spec: BackboneSpec) -> Backbone:
    return backbone_class(spec.backbone)(spec)
