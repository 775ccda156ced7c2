"""Named parts of each backbone's parameters, for ``empp.pretrained_reinit``.

A run that starts from EMPP-pre-trained weights can leave parts of the backbone at their
fresh initial values. The parts are named per backbone (``model.backbone``) and resolve to
fragments of the parameter names of :class:`~empp_ff.model.potential.Potential` (a
parameter whose name contains a fragment keeps its fresh value). ``elements`` is, on every
backbone, every part indexed by element: what the study of issue 17 found worth
re-initialising (``benchmarks/results/empp_generalisation_study_cpu.md``).

Plain data, no torch: the configuration validates against it.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

_MACE_ELEMENTS = ("node_embedding.", ".skip_tp.", ".symmetric_contractions.")
_ET_EMBEDDINGS = ("backbone.embedding.", "backbone.neighbour_embedding.embedding.")

REINIT_PARTS: Dict[str, Dict[str, Tuple[str, ...]]] = {
    "mace": {
        "embedding": ("node_embedding.",),
        "skip": (".skip_tp.",),
        "contractions": (".symmetric_contractions.",),
        "elements": _MACE_ELEMENTS,
        "products": (".products.",),
        "readouts": (".readouts.",),
        "interactions": (".interactions.",),
    },
    # torchmd-net's ET: its only element-indexed parameters are the two embedding tables
    # (the atom's own and the neighbour embedding's).
    "torchmd_et": {
        "embedding": _ET_EMBEDDINGS,
        "elements": _ET_EMBEDDINGS,
        "readouts": ("backbone.readout.", "backbone.out_norm."),
        "interactions": ("backbone.layers.", "backbone.neighbour_embedding."),
    },
}


def all_part_names() -> List[str]:
    """Every part name some backbone defines."""
    return sorted({name for parts in REINIT_PARTS.values() for name in parts})


def reinit_fragments(backbone: str, parts: Sequence[str]) -> Tuple[str, ...]:
    """The parameter-name fragments of ``parts`` on ``backbone``; ValueError naming the
    parts that backbone does not have."""
    known = REINIT_PARTS[backbone]
    missing = [p for p in parts if p not in known]
    if missing:
        raise ValueError(f"pretrained_reinit: the {backbone} backbone has no parts {missing}; "
                         f"its parts: {sorted(known)}")
    return tuple(fragment for part in parts for fragment in known[part])
