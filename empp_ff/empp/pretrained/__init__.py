"""EMPP-pre-trained backbone weights shipped with empp-ff, and ``empp.pretrained``.

With ``empp.enabled``, ``empp.pretrained`` names the self-supervised EMPP
checkpoint a supervised run starts from: a bundled name (``BUNDLED``), a run
directory or a checkpoint file. The weights go through the fine-tuning path
(``empp_ff.train.finetune``: same architecture or an error, element-dependent
weights by atomic number). ``empp.enabled: false`` ignores it, as every other
``empp.*`` key.

``geom-drugs-demo`` is the demo architecture (MACE 32 channels, L = 1,
correlation 2, 2 interactions, r_max 5 Å, float32) pre-trained with EMPP alone
(positions and elements only, no labels) on the 558 GFN2-xTB conformers of 40
drug-like molecules (H C N O F S Cl) of ``../shared/data/geom_drugs_xtb.h5``,
10 epochs, seed 1 (``README.md`` here has the commands). What it does for a force
field: started from with ``empp.pretrained_reinit: [elements]`` (the element-dependent
parts at fresh values) it lowers force and energy errors on molecules it has never seen
when labelled frames are few (``benchmarks/results/empp_generalisation_study_cpu.md``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Tuple

HERE = Path(__file__).resolve().parent

#: name -> {backbone (``model.backbone``): file in this directory}. One name, one recipe:
#: each backbone's demo architecture pre-trained the same way on the same structures.
BUNDLED: Dict[str, Dict[str, str]] = {
    "geom-drugs-demo": {"mace": "geom_drugs_demo.pt", "torchmd_et": "geom_drugs_demo_torchmd_et.pt"},
}

def resolve_pretrained(value: Optional[str], backbone: str = "mace") -> Optional[str]:
    """The checkpoint path (or run directory) that ``empp.pretrained = value`` means for a
    run of ``backbone``; ``ValueError`` naming the key when it is neither bundled (for that
    backbone) nor an existing path."""
    if value is None:
        return None
    if value in BUNDLED:
        files = BUNDLED[value]
        if backbone not in files:
            raise ValueError(f"empp.pretrained={value}: bundled for the backbones {', '.join(sorted(files))}, "
                             f"not {backbone}; use null to start from random weights")
        path = HERE / files[backbone]
        if not path.is_file():
            raise ValueError(f"empp.pretrained={value}: the bundled file {path} is missing from this installation")
        return str(path)
    if Path(value).expanduser().exists():
        return str(Path(value).expanduser())
    raise ValueError(
        f"empp.pretrained={value!r} is neither a bundled name ({', '.join(sorted(BUNDLED))}) nor an existing "
        "checkpoint or run directory; use null to start from random weights"
    )


def initial_weights(finetune_from: Optional[str], empp, backbone: str = "mace") -> Optional[Tuple[str, str]]:
    """(config key, checkpoint or run directory) a new run starts from, or None:
    ``finetune_from`` when set (a run of your own replaces the bundled start), else
    ``empp.pretrained`` when EMPP is on (``empp``: an EMPPConfig; a bundled name is resolved
    for ``backbone``). ``ValueError`` when
    ``empp.pretrained`` resolves to nothing (config validation calls this)."""
    if finetune_from:
        return "finetune_from", finetune_from
    if not empp.enabled or empp.pretrained is None:
        return None
    return "empp.pretrained", resolve_pretrained(empp.pretrained, backbone)
