"""The backbones by name (``model.backbone``): the registry of their descriptions, and the factory.

Each backbone's module defines its network (an :class:`~empp_ff.model.interface.Backbone`)
and its :class:`~empp_ff.model.description.BackboneDescription`; ``_SHIPPED`` lists the
descriptions, one line per backbone, and every other part of empp-ff asks this module.
Adding a backbone is its module, its tests and its line here (``tests/test_backbone_registry.py``
shows it with a toy backbone). A backbone's own packages (torchmd-net for the ET) load only
when it is built. ``MACEBackbone`` and ``default_dtype`` are re-exported for existing imports.
"""

from __future__ import annotations

from typing import Dict, Tuple, Type

from empp_ff.model import mace, torchmd_et
from empp_ff.model.description import BackboneDescription
from empp_ff.model.interface import Backbone, default_dtype
from empp_ff.model.mace import MACEBackbone

__all__ = ["Backbone", "MACEBackbone", "backbone_class", "backbone_names", "build_backbone", "default_dtype",
           "description", "descriptions", "register", "unregister"]

# The backbones empp-ff ships, the first the default (a spec written before the field
# existed is a MACE one).
_SHIPPED = (
    mace.DESCRIPTION,
    torchmd_et.DESCRIPTION,
)

_REGISTRY: Dict[str, BackboneDescription] = {}


def register(entry: BackboneDescription) -> None:
    """Make ``entry`` a ``model.backbone`` value; ValueError if its name is taken."""
    if entry.name in _REGISTRY:
        raise ValueError(f"a backbone named {entry.name!r} is already registered")
    _REGISTRY[entry.name] = entry


def unregister(name: str) -> None:
    """Remove a registered backbone (tests that register a toy one)."""
    del _REGISTRY[name]


for _entry in _SHIPPED:
    register(_entry)


def descriptions() -> Tuple[BackboneDescription, ...]:
    """Every registered backbone's description, in registration order."""
    return tuple(_REGISTRY.values())


def backbone_names() -> Tuple[str, ...]:
    return tuple(_REGISTRY)


def description(name: str) -> BackboneDescription:
    """The description of backbone ``name``; ValueError naming the known ones."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def backbone_class(name: str) -> Type[Backbone]:
    """The network class of backbone ``name``."""
    return description(name).network


def build_backbone(spec) -> Backbone:
    """The network of ``spec`` (a ``BackboneSpec``), of the backbone it names."""
    return description(spec.backbone).build(spec)
