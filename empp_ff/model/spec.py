"""What defines a backbone, as plain JSON-able dataclasses.

* :class:`Architecture`: which backbone (``backbone``, one of :data:`BACKBONE_NAMES`)
  and its hyper-parameters. Defined here once; the
  training config's ``model:`` section is an ``Architecture`` (plus ``e0s``),
  and every :class:`BackboneSpec` is one, so the two cannot drift apart.
* :class:`BackboneSpec`: an architecture plus the chemistry and data statistics
  a trained network depends on: everything needed to rebuild it. A checkpoint
  stores ``BackboneSpec.to_dict()`` (a flat dict) next to the state dict, so a
  model can be rebuilt (for evaluation, export or fine-tuning) without pickled
  Python objects.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List

from empp_ff._dtypes import check_dtype_name
from empp_ff._elements import MAX_ATOMIC_NUMBER

# The backbones a spec may name (``empp_ff.model.backbone`` builds each). A spec written
# before the field existed is a MACE one.
BACKBONE_NAMES = ("mace", "torchmd_et")

# The architecture fields each backbone uses; the others are ignored by it (and neither
# validated nor compared when fine-tuning).
_SHARED_FIELDS = ("backbone", "r_max", "num_channels", "num_interactions", "dtype")
BACKBONE_FIELDS = {
    "mace": _SHARED_FIELDS + ("max_L", "correlation", "max_ell", "num_bessel", "num_polynomial_cutoff",
                              "radial_mlp", "mlp_irreps"),
    "torchmd_et": _SHARED_FIELDS + ("num_heads", "num_rbf", "distance_influence"),
}

DISTANCE_INFLUENCE = ("keys", "values", "both", "none")


@dataclass
class Architecture:
    """Backbone and hyper-parameters (the ``model.*`` config keys besides ``e0s``).

    ``num_interactions``: MACE interactions, or the torchmd_et's attention layers (its
    neighbour embedding is one more message-passing step). MACE alone: ``max_L`` ..
    ``mlp_irreps``; torchmd_et alone (torchmd-net's Equivariant Transformer):
    ``num_heads``, ``num_rbf`` (exp-normal radial functions), ``distance_influence``."""

    backbone: str = "mace"
    r_max: float = 5.0
    num_channels: int = 64
    max_L: int = 1
    num_interactions: int = 2
    correlation: int = 3
    max_ell: int = 3
    num_bessel: int = 8
    num_polynomial_cutoff: int = 5
    radial_mlp: List[int] = field(default_factory=lambda: [64, 64, 64])
    mlp_irreps: str = "16x0e"
    num_heads: int = 8
    num_rbf: int = 32
    distance_influence: str = "both"
    dtype: str = "float32"

    def used_fields(self) -> tuple:
        """The names of the fields this architecture's backbone uses."""
        return BACKBONE_FIELDS[self.backbone]

    def validate(self) -> None:
        """Raise ``ValueError`` whose message starts with the offending field's name."""
        check_dtype_name(self.dtype)
        if self.backbone not in BACKBONE_NAMES:
            raise ValueError(f"backbone must be one of {', '.join(BACKBONE_NAMES)}, got {self.backbone!r}")
        checks = [
            (self.r_max > 0, "r_max must be > 0"),
            (self.num_channels > 0, "num_channels must be > 0"),
            (self.max_L >= 0, "max_L must be >= 0"),
            (self.num_interactions >= 1, "num_interactions must be >= 1"),
            (self.correlation >= 1, "correlation must be >= 1"),
            (self.num_heads >= 1, "num_heads must be >= 1"),
            (self.num_rbf >= 1, "num_rbf must be >= 1"),
            (self.distance_influence in DISTANCE_INFLUENCE,
             f"distance_influence must be one of {', '.join(DISTANCE_INFLUENCE)}, got {self.distance_influence!r}"),
            (self.backbone != "torchmd_et" or self.num_channels % max(self.num_heads, 1) == 0,
             f"num_channels ({self.num_channels}) must be a multiple of num_heads ({self.num_heads}) "
             "for the torchmd_et backbone"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def architecture(self) -> Dict[str, Any]:
        """The architecture fields alone, as keyword arguments (copies, not shared lists)."""
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(Architecture)}


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
