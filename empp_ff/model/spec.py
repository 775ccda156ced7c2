"""What defines a backbone, as plain JSON-able dataclasses: the record the config and files hold.

* :class:`Architecture`: which backbone (``backbone``, a registered name) and its
  hyper-parameters. It is the record of every registered backbone's fields (each backbone
  declares its own in its architecture dataclass, ``empp_ff.model.architecture``), so that the
  ``model:`` config keys and the spec in checkpoints and model files keep one flat shape
  whatever the backbone; a backbone uses, validates and compares only its own
  (:meth:`Architecture.own`). The training config's ``model:`` section is an
  ``Architecture`` (plus ``e0s``), and every :class:`BackboneSpec` is one, so the two cannot
  drift apart.
* :class:`BackboneSpec`: an architecture plus the chemistry and data statistics
  a trained network depends on: everything needed to rebuild it. A checkpoint
  stores ``BackboneSpec.to_dict()`` (a flat dict) next to the state dict, so a
  model can be rebuilt (for evaluation, export or fine-tuning) without pickled
  Python objects.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence

from empp_ff._elements import MAX_ATOMIC_NUMBER
from empp_ff.model.architecture import BackboneArchitecture
from empp_ff.model.backbone import backbone_names, description, descriptions
from empp_ff.model.description import BackboneDescription


def record_fields(entries: Sequence[BackboneDescription]) -> List[tuple]:
    """(name, type, field) of the record of ``entries``' architectures: ``backbone`` (the first
    entry's name by default), then each architecture's fields in its order, a field that several
    share once (with one default), and ``dtype`` last (the order config files and model files
    have always had)."""
    seen: Dict[str, tuple] = {}
    for entry in entries:
        types = entry.architecture.field_types()
        for f in dataclasses.fields(entry.architecture):
            if f.name not in seen:
                seen[f.name] = (types[f.name], f)
            elif _default(seen[f.name][1]) != _default(f):
                raise ValueError(f"backbone {entry.name}: the default of {f.name} differs from another backbone's")
    names = [n for n in seen if n != "dtype"] + ["dtype"]
    fields = [("backbone", str, dataclasses.field(default=entries[0].name))]
    for name in names:
        tp, f = seen[name]
        fields.append((name, tp, dataclasses.field(default=f.default, default_factory=f.default_factory)))
    return fields


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


class _ArchitectureRecord:
    """The methods of :class:`Architecture`; its fields come from the registry."""

    def own(self) -> BackboneArchitecture:
        """This backbone's architecture: the fields it uses, with its checks."""
        return description(self.backbone).architecture.from_record(self)

    def used_fields(self) -> tuple:
        """The names of the fields this architecture's backbone uses (others are neither
        validated nor compared when fine-tuning)."""
        return ("backbone",) + description(self.backbone).architecture.field_names()

    def validate(self) -> None:
        """Raise ``ValueError`` whose message starts with the offending field's name."""
        if self.backbone not in backbone_names():
            raise ValueError(f"backbone must be one of {', '.join(backbone_names())}, got {self.backbone!r}")
        self.own().validate()

    def architecture(self) -> Dict[str, Any]:
        """The architecture fields alone, as keyword arguments (copies, not shared lists)."""
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(Architecture)}


Architecture = dataclasses.make_dataclass(
    "Architecture", record_fields(descriptions()), bases=(_ArchitectureRecord,), namespace={
        "__module__": __name__,
        "__doc__": "Backbone and hyper-parameters (the ``model.*`` config keys besides ``e0s``): the record "
                   "of the registered backbones' architecture fields (each backbone's architecture "
                   "dataclass says what its fields mean).",
    })


@dataclass(kw_only=True)
class BackboneSpec(Architecture):
    # Chemistry: which elements the model knows and their reference energies (eV).
    atomic_numbers: List[int]
    atomic_energies: List[float]
    # Data statistics that fix the output scale (eV, eV/Å).
    avg_num_neighbors: float = 1.0
    scale: float = 1.0
    shift: float = 0.0

    def __post_init__(self):
        if len(self.atomic_numbers) != len(self.atomic_energies):
            raise ValueError(
                f"atomic_numbers ({len(self.atomic_numbers)}) and atomic_energies "
                f"({len(self.atomic_energies)}) must have the same length"
            )
        if list(self.atomic_numbers) != sorted(set(self.atomic_numbers)):
            raise ValueError(f"atomic_numbers must be sorted and unique, got {self.atomic_numbers}")
        if any(not 1 <= z <= MAX_ATOMIC_NUMBER for z in self.atomic_numbers):
            raise ValueError(f"atomic numbers must lie in 1..{MAX_ATOMIC_NUMBER}, got {self.atomic_numbers}")
        self.validate()

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> BackboneSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown backbone spec keys: {unknown}")
        return cls(**d)
