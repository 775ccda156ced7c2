"""A self-supervised EMPP run made into a bundle file (what ``empp.pretrained`` starts
from; the bundled ones live in ``empp_ff/empp/pretrained``):

    python -m empp_ff.train.bundle RUN_DIR_OR_CHECKPOINT OUT.pt
"""

from __future__ import annotations

import sys
from pathlib import Path

from empp_ff.train.checkpoint import load_checkpoint, save_checkpoint

# Kept from a training checkpoint: what initialising from it needs, plus provenance.
_KEEP = ("config", "backbone_spec", "ema_potential_state", "potential_state", "empp_state", "label_stats",
         "statistics", "epoch", "best_val", "val_metrics", "history", "splits_sizes", "format", "format_version")


def write_bundle(run: str, out: str) -> Path:
    """Write the initialisation-only part of run ``run``'s best checkpoint to ``out``
    (no optimiser or scheduler state: a bundle cannot be resumed, only started from)."""
    state = load_checkpoint(run)
    if state["config"].get("task") != "pretrain":
        raise ValueError(f"{run} is not a self-supervised EMPP run (task: {state['config'].get('task')!r})")
    slim = {key: state[key] for key in _KEEP if key in state}
    if slim.get("ema_potential_state") is not None:  # the weights a fine-tune starts from
        slim.pop("potential_state")
    save_checkpoint(slim, out)
    return Path(out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m empp_ff.train.bundle RUN_DIR_OR_CHECKPOINT OUT.pt")
    print(write_bundle(sys.argv[1], sys.argv[2]))
