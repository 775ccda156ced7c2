"""Checkpoints, defined in one place: what one holds, how a run builds it, how it is
read back (also when an older empp-ff wrote it), and the file.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only (no
pickled Python objects), so ``torch.load(..., weights_only=True)`` reads it and
it survives package upgrades. :data:`CONTENT` names and explains its keys; a
bundle (``empp.pretrained``) holds the part :data:`INITIALISATION_KEYS` keeps.

Exact resumption needs no RNG state: every random draw of epoch e comes from
streams seeded by (seed, e) (``train/replay.py``), and a killed epoch is replayed
from its first batch.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Union

import torch

from empp_ff.train.auxiliaries import KNOWN

CHECKPOINT_FORMAT = "empp-ff-checkpoint"
CHECKPOINT_VERSION = 1

#: What a training checkpoint holds (``save_checkpoint`` adds ``format`` and ``format_version``).
CONTENT: Dict[str, str] = {
    "config": "the resolved training config (dict)",
    "backbone_spec": "BackboneSpec.to_dict(): enough to rebuild the network",
    "start_atomic_energies": "the reference energies the run started with (the spec's are refitted every "
                             "epoch; EMPP's energy labels stay relative to these); absent in older checkpoints",
    "potential_state": "state dict of the Potential (raw weights)",
    "ema_potential_state": "the same with the EMA weights, or None",
    **{kind.state_key(): f"state dict of the {kind.label} module ({kind.config_key}), or None" for kind in KNOWN},
    "optimizer_state": "for resuming",
    "scheduler_state": "for resuming",
    "ema_state": "the EMA of every trained parameter (for resuming), or None",
    "epoch": "completed epochs",
    "step": "optimiser steps taken",
    "best_val": "the lowest validation selection metric (the one of best.pt)",
    "best_epoch": "its epoch; absent in older checkpoints (found from the history)",
    "stop_best": "[metric, epoch] of the last improvement by train.min_improvement; absent in older ones",
    "val_metrics": "the last epoch's metrics row",
    "history": "one metrics row per epoch",
    "wall_time_s": "training time so far; absent in older ones",
    "label_stats": "energy/force statistics of the auxiliary losses' labels",
    "statistics": "the training-set statistics (for reference)",
    "splits_sizes": "the split sizes (for reference)",
}

#: What starting another run from a checkpoint needs, plus provenance: a bundle keeps only this.
INITIALISATION_KEYS = ("config", "backbone_spec", "ema_potential_state", "potential_state", "empp_state",
                       "label_stats", "statistics", "epoch", "best_val", "val_metrics", "history", "splits_sizes",
                       "format", "format_version")


# -- a run's progress ---------------------------------------------------------------------
class Progress(NamedTuple):
    """Where a run stands after its last completed epoch."""

    epoch: int
    step: int
    best_val: float
    best_epoch: int
    stop_best: tuple
    history: List[Dict[str, Any]]
    wall_time_s: float


# -- building one ---------------------------------------------------------------------------
def training_checkpoint(*, config: Dict[str, Any], model, start_energies: List[float], optimizer, scheduler, ema,
                        progress: Progress, label_stats: Dict[str, float], statistics: Dict[str, Any],
                        splits: Dict[str, Any]) -> Dict[str, Any]:
    """The checkpoint of a run after ``progress.epoch`` epochs: ``model`` (its TrainingModel),
    ``ema`` (its EMA or None) and the rest as :data:`CONTENT` says."""
    potential = model.potential
    ema_potential = None
    if ema is not None:
        averaged = ema.averaged_state_dict()
        ema_potential = {k[len("potential."):]: v for k, v in averaged.items() if k.startswith("potential.")}
    modules = {kind.state_key(): getattr(model, kind.name) for kind in KNOWN}
    return {
        "config": config,
        "backbone_spec": potential.backbone.spec.to_dict(),
        "start_atomic_energies": start_energies,
        "potential_state": potential.state_dict(),
        "ema_potential_state": ema_potential,
        **{key: module.state_dict() if module is not None else None for key, module in modules.items()},
        "optimizer_state": optimizer.state_dict(),
        "scheduler_state": scheduler.state_dict(),
        "ema_state": ema.state_dict() if ema is not None else None,
        "epoch": progress.epoch,
        "step": progress.step,
        "best_val": progress.best_val,
        "best_epoch": progress.best_epoch,
        "stop_best": list(progress.stop_best),
        "val_metrics": progress.history[-1] if progress.history else {},
        "history": progress.history,
        "wall_time_s": progress.wall_time_s,
        "label_stats": label_stats,
        "statistics": statistics,
        "splits_sizes": {k: int(len(v)) for k, v in splits.items()},
    }


# -- reading one back -----------------------------------------------------------------------
def read_progress(state: Dict[str, Any], best_epoch_of) -> Progress:
    """The run's progress in ``state``; what older checkpoints lack is derived as it was then:
    the best epoch from the history (``best_epoch_of(history)``), the last improvement from the
    best, no wall time."""
    history = list(state.get("history", []))
    best_val = float(state["best_val"])
    best_epoch = int(state.get("best_epoch", best_epoch_of(history)))
    return Progress(epoch=int(state["epoch"]), step=int(state["step"]), best_val=best_val, best_epoch=best_epoch,
                    stop_best=tuple(state.get("stop_best", (best_val, best_epoch))), history=history,
                    wall_time_s=float(state.get("wall_time_s", 0.0)))


def restore_training(state: Dict[str, Any], model, optimizer, scheduler, ema) -> None:
    """Load the weights and the optimiser, schedule and EMA states of ``state`` into a run's
    objects (an auxiliary module without a saved state keeps its fresh weights)."""
    model.potential.load_state_dict(state["potential_state"])
    for kind in KNOWN:
        module = getattr(model, kind.name)
        if module is not None and state.get(kind.state_key()) is not None:
            module.load_state_dict(state[kind.state_key()])
    optimizer.load_state_dict(state["optimizer_state"])
    scheduler.load_state_dict(state["scheduler_state"])
    if ema is not None and state.get("ema_state") is not None:
        ema.load_state_dict(state["ema_state"])


def start_atomic_energies(state: Optional[Dict[str, Any]], spec) -> List[float]:
    """The reference energies the run of ``state`` started with; a fresh run's (``state`` None), and a
    checkpoint of an older empp-ff, which lacks them, take those of ``spec`` (refitted, for the latter)."""
    saved = (state or {}).get("start_atomic_energies")
    return [float(e) for e in (saved if saved is not None else spec.atomic_energies)]


def has_ema_weights(state: Dict[str, Any]) -> bool:
    """Whether the checkpoint holds EMA weights of the potential."""
    return state.get("ema_potential_state") is not None


def potential_weights(state: Dict[str, Any], use_ema: bool = True) -> Dict[str, torch.Tensor]:
    """The potential's state dict: the EMA weights if the checkpoint has them and ``use_ema``."""
    return state["ema_potential_state"] if use_ema and has_ema_weights(state) else state["potential_state"]


def initialisation_part(state: Dict[str, Any]) -> Dict[str, Any]:
    """What a bundle keeps of ``state``: :data:`INITIALISATION_KEYS`, and of the weights only those
    a fine-tune starts from (the EMA ones when there are)."""
    part = {key: state[key] for key in INITIALISATION_KEYS if key in state}
    if part.get("ema_potential_state") is not None:
        part.pop("potential_state")
    return part


# -- the file -------------------------------------------------------------------------------
def save_checkpoint(state: Dict[str, Any], path: Union[str, Path]) -> None:
    """Write ``state`` to ``path`` atomically (temp file, fsync, rename), so a kill
    at any moment leaves the previous checkpoint intact."""
    from empp_ff.train.io import atomic_write_bytes

    buffer = io.BytesIO()
    torch.save(dict(state, format=CHECKPOINT_FORMAT, format_version=CHECKPOINT_VERSION), buffer)
    atomic_write_bytes(path, buffer.getvalue())


_WHAT = {"best.pt": "the weights of the best validation epoch", "last.pt": "the last epoch's weights"}


def resolve_checkpoint(target: Union[str, Path], prefer: str = "best") -> Path:
    """A checkpoint file, or a run directory (→ its ``checkpoints/<prefer>.pt``, best.pt by default).

    A run directory without that file is an error, never a quiet fallback to the other one:
    best.pt and last.pt hold different weights, so the numbers would silently change meaning.
    """
    target = Path(target)
    if target.is_dir():
        wanted = target / "checkpoints" / f"{prefer}.pt"
        other = target / "checkpoints" / ("last.pt" if prefer == "best" else "best.pt")
        if wanted.is_file():
            return wanted
        if other.is_file():
            raise FileNotFoundError(
                f"{target} has no checkpoints/{wanted.name} ({_WHAT[wanted.name]}), only checkpoints/"
                f"{other.name} ({_WHAT[other.name]}); not using that in its place. To use it, give the file "
                f"instead of the run directory: {other}"
            )
        raise FileNotFoundError(
            f"{target} is a directory but has no checkpoints/best.pt or checkpoints/last.pt; "
            "is it an empp-ff run directory?"
        )
    if not target.is_file():
        raise FileNotFoundError(f"checkpoint not found: {target}")
    return target


def load_checkpoint(target: Union[str, Path], prefer: str = "best") -> Dict[str, Any]:
    path = resolve_checkpoint(target, prefer)
    if path.stat().st_size == 0:
        raise ValueError(
            f"cannot read checkpoint {path}: the file is empty (0 bytes; a copy cut short or a full disk?). "
            "Restore it, or delete it to start that run over."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, not a torch file, pickled objects...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"cannot read checkpoint {path}: {reason} (a truncated or foreign file?)") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an empp-ff checkpoint")
    if int(state.get("format_version", 0)) > CHECKPOINT_VERSION:
        raise ValueError(
            f"{path} was written by a newer empp-ff (checkpoint format "
            f"{state['format_version']} > {CHECKPOINT_VERSION}); upgrade empp-ff"
        )
    state["path"] = str(path)
    return state


def build_potential(state: Dict[str, Any], use_ema: bool = True, dtype: str | None = None):
    """Rebuild the ``Potential`` of a loaded checkpoint (EMA weights if present and asked)."""
    from empp_ff.model.backbone import build_backbone
    from empp_ff.model.potential import Potential
    from empp_ff.model.spec import BackboneSpec

    spec_dict = dict(state["backbone_spec"])
    if dtype is not None:
        spec_dict["dtype"] = dtype
    potential = Potential(build_backbone(BackboneSpec.from_dict(spec_dict)))
    potential.load_state_dict(potential_weights(state, use_ema))  # load_state_dict casts to the module's dtype
    return potential.eval()
