"""The hyper-parameters every backbone has: the base of each backbone's own architecture.

A backbone declares its architecture as a dataclass subclassing :class:`BackboneArchitecture`
with the fields it uses (each a ``model.*`` config key), their defaults and its checks
(``checks``), and its one-line summary (``describe``). The training config and the JSON
spec hold the union of the registered backbones' fields (``empp_ff.model.spec``); a backbone
reads its own out of it with :meth:`BackboneArchitecture.from_record`.

Plain data, no torch.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Tuple

from empp_ff._dtypes import check_dtype_name


@dataclass
class BackboneArchitecture:
    """``r_max`` (Å), ``num_channels`` and ``dtype`` (the precision), which every backbone has.
    ``num_interactions`` is each backbone's own (MACE's interactions, the ET's attention
    layers). A field that several backbones declare has one default (the config has one key)."""

    r_max: float = 5.0
    num_channels: int = 64
    dtype: str = "float32"

    def checks(self) -> List[Tuple[bool, str]]:
        """(condition, message) pairs; a subclass extends its parent's list."""
        return [(self.r_max > 0, "r_max must be > 0"), (self.num_channels > 0, "num_channels must be > 0")]

    def validate(self) -> None:
        """Raise ``ValueError`` whose message starts with the offending field's name."""
        check_dtype_name(self.dtype)
        for ok, message in self.checks():
            if not ok:
                raise ValueError(message)

    def describe(self) -> str:
        """One line naming the backbone and its size (``empp-ff info``)."""
        raise NotImplementedError

    @classmethod
    def field_names(cls) -> Tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def field_types(cls) -> Dict[str, Any]:
        """Each field's type, resolved (the annotations are strings in modules that postpone them)."""
        return typing.get_type_hints(cls)

    @classmethod
    def from_record(cls, record: Any) -> BackboneArchitecture:
        """This backbone's fields out of ``record`` (a mapping such as a spec dict, or an object
        with those attributes); a field the record lacks takes its default."""
        get = record.get if isinstance(record, Mapping) else lambda name, default: getattr(record, name, default)
        missing = object()
        values = {name: get(name, missing) for name in cls.field_names()}
        return cls(**{name: value for name, value in values.items() if value is not missing})
