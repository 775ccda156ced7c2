"""A self-supervised EMPP run made into a bundle file (what ``empp.pretrained`` starts
from; the bundled ones live in ``empp_ff/empp/pretrained``):

    python -m empp_ff.train.bundle RUN_DIR_OR_CHECKPOINT OUT.pt
"""

from __future__ import annotations

import sys
from pathlib import Path

from empp_ff.train.checkpoint import initialisation_part, load_checkpoint, save_checkpoint


def write_bundle(run: str, out: str) -> Path:
    """Write the initialisation-only part of run ``run``'s best checkpoint to ``out``
    (no optimiser or scheduler state: a bundle cannot be resumed, only started from)."""
    state = load_checkpoint(run)
    if state["config"].get("task") != "pretrain":
        raise ValueError(f"{run} is not a self-supervised EMPP run (task: {state['config'].get('task')!r})")
    save_checkpoint(initialisation_part(state), out)
    return Path(out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m empp_ff.train.bundle RUN_DIR_OR_CHECKPOINT OUT.pt")
    print(write_bundle(sys.argv[1], sys.argv[2]))
