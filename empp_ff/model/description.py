"""What a backbone declares about itself: one :class:`BackboneDescription` per backbone.

Each backbone's module defines its description next to its network; the registry
(``empp_ff.model.backbone``) lists the descriptions, and every other part of empp-ff asks
it: the config and the spec for the architecture's fields and checks, ``empp.pretrained_reinit``
for the named parts, the exporter for the packages a model file records, ``empp-ff info``
for the summary line, the trainer and the checkpoints for ``build``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Tuple, Type

from empp_ff.model.architecture import BackboneArchitecture


@dataclass(frozen=True)
class BackboneDescription:
    """``name``: the ``model.backbone`` value. ``architecture``: its hyper-parameters (a
    :class:`BackboneArchitecture` subclass). ``network``: the module class built from a spec (an
    ``empp_ff.model.interface.Backbone`` subclass). ``packages``: the distributions its
    networks are built from, recorded with their versions in every model file (besides torch,
    ase and python). ``reinit_parts``: named parts of its parameters for
    ``empp.pretrained_reinit``, each a tuple of fragments of the ``Potential``'s parameter names;
    ``elements`` is every part indexed by element (its ``element_indexed_parameters``)."""

    name: str
    architecture: Type[BackboneArchitecture]
    network: type
    packages: Tuple[str, ...]
    reinit_parts: Mapping[str, Tuple[str, ...]]

    def __post_init__(self):
        if "elements" not in self.reinit_parts:
            raise ValueError(f"backbone {self.name}: reinit_parts must name its element-indexed parts 'elements'")

    def build(self, spec: Any):
        """The network of ``spec`` (a ``BackboneSpec`` naming this backbone)."""
        return self.network(spec)

    def describe(self, record: Any) -> str:
        """One line naming the backbone and its size, for a spec (dict or object)."""
        return self.architecture.from_record(record).describe()

    def reinit_fragments(self, parts: Sequence[str]) -> Tuple[str, ...]:
        """The parameter-name fragments of ``parts``; ValueError naming the parts it does not have."""
        missing = [p for p in parts if p not in self.reinit_parts]
        if missing:
            raise ValueError(f"pretrained_reinit: the {self.name} backbone has no parts {missing}; "
                             f"its parts: {sorted(self.reinit_parts)}")
        return tuple(fragment for part in parts for fragment in self.reinit_parts[part])
