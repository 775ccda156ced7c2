"""Named parts of each backbone's parameters, for ``empp.pretrained_reinit``.

A run that starts from EMPP-pre-trained weights can leave parts of the backbone at their
fresh initial values. Each backbone names its parts in its description (``reinit_parts``),
as fragments of the parameter names of :class:`~empp_ff.model.potential.Potential` (a
parameter whose name contains a fragment keeps its fresh value). ``elements`` is, on every
backbone, every part indexed by element: what the study of issue 17 found worth
re-initialising (``benchmarks/results/empp_generalisation_study_cpu.md``).
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

from empp_ff.model.backbone import description, descriptions


def all_part_names() -> List[str]:
    """Every part name some backbone defines."""
    return sorted({name for entry in descriptions() for name in entry.reinit_parts})


def reinit_fragments(backbone: str, parts: Sequence[str]) -> Tuple[str, ...]:
    """The parameter-name fragments of ``parts`` on ``backbone``; ValueError naming the
    parts that backbone does not have."""
    return description(backbone).reinit_fragments(parts)
