"""Fine-tuning: start a run from the weights of another run's checkpoint.

Backbone (and EMPP) tensors whose names and shapes match are copied;
data-dependent buffers (E0s, scale/shift) and anything whose shape differs
(e.g. element tables when the species differ) keep their fresh values. The
record of what was loaded is written to ``finetune.json`` by the trainer.
"""

from __future__ import annotations

from typing import Any, Dict, List

from empp_ff.train.checkpoint import load_checkpoint

# Buffers fixed by the new run's data, never taken from the source run.
_DATA_BUFFERS = ("atomic_energies_fn.", "scale_shift.")


def load_pretrained(model, target) -> Dict[str, Any]:
    """Copy matching weights of checkpoint (or run directory) ``target`` into
    ``model`` (a TrainingModel); return the record for ``finetune.json``."""
    state = load_checkpoint(target)
    source = state.get("ema_potential_state") or state["potential_state"]
    own = model.potential.state_dict()
    loaded, reinitialised = [], []
    for name, value in own.items():
        src = source.get(name)
        if src is not None and src.shape == value.shape and not any(s in name for s in _DATA_BUFFERS):
            own[name] = src.to(value.dtype)
            loaded.append(name)
        else:
            reinitialised.append(name)
    model.potential.load_state_dict(own)
    empp_loaded: List[str] = []
    if model.empp is not None and state.get("empp_state"):
        empp_own = model.empp.state_dict()
        for name, value in empp_own.items():
            src = state["empp_state"].get(name)
            if src is not None and src.shape == value.shape and "label" not in name:
                empp_own[name] = src.to(value.dtype)
                empp_loaded.append(name)
        model.empp.load_state_dict(empp_own)
    return {
        "finetune_from": str(target), "checkpoint": state["path"],
        "loaded": loaded, "reinitialised": reinitialised, "empp_loaded": empp_loaded,
        "source_task": state["config"].get("task"),
    }
