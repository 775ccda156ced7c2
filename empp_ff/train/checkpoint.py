"""Checkpoints: plain state dicts written atomically, loaded with weights_only=True.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only (no
pickled Python objects), so ``torch.load(..., weights_only=True)`` reads it and
it survives package upgrades. Keys:

- ``format`` ("empp-ff-checkpoint"), ``format_version`` (int)
- ``config``: the resolved training config (dict)
- ``backbone_spec``: ``BackboneSpec.to_dict()``, enough to rebuild the network
- ``start_atomic_energies``: the reference energies the run started with (the spec's
  are refitted every epoch; EMPP's energy labels stay relative to these), or absent
- ``potential_state``: state dict of ``Potential`` (raw weights)
- ``ema_potential_state``: the same with EMA weights, or absent/None
- ``empp_state``: EMPP head/encoder state dict, or None
- ``optimizer_state``, ``scheduler_state``, ``ema_state``: for resuming
- ``epoch`` (completed epochs), ``step``, ``best_val``, ``val_metrics`` (dict),
  ``history`` (one metrics row per epoch), ``wall_time_s``: for resuming
- ``label_stats``: dict of floats (energy/force statistics used by EMPP)
- ``statistics`` (the training-set statistics), ``splits_sizes``: for reference

Exact resumption needs no RNG state: every random draw of epoch e comes from
streams seeded by (seed, e) (``train/replay.py``), and a killed epoch is replayed
from its first batch.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Dict, Union

import torch

CHECKPOINT_FORMAT = "empp-ff-checkpoint"
CHECKPOINT_VERSION = 1


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
    weights = state.get("ema_potential_state") if use_ema else None
    if weights is None:
        weights = state["potential_state"]
    potential.load_state_dict(weights)  # load_state_dict casts to the module's dtype
    return potential.eval()
