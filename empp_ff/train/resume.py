"""Resume policy: a run directory with ``checkpoints/last.pt`` is continued, but
only with the config it was started with, less what may change between an
interruption and its resumption: where the run directory is (given relative or
absolute, or moved), where the data file is (the data are identified by their
fingerprint, ``train/rundir/derived.py``), and keys that change no result."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

from empp_ff.train.checkpoint import load_checkpoint
from empp_ff.train.config import Config, ConfigError

# Config keys that may change between an interrupted run and its resumption.
RESUMABLE_CHANGES = {"run_dir", "data.path", "train.max_epochs", "train.patience", "train.progress", "train.device",
                     "train.threads", "train.tensorboard", "data.num_workers"}


def interrupted_state(run_dir: Path) -> Optional[Dict[str, Any]]:
    """The last checkpoint of an interrupted (or finished) run in ``run_dir``, or None."""
    last = run_dir / "checkpoints" / "last.pt"
    return load_checkpoint(last) if last.exists() else None


def _flatten(d: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k not in ("e0s",):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def resume_problem(saved: Dict[str, Any], current: Dict[str, Any], run_dir: Path, epochs: int,
                   finished: bool) -> Optional[str]:
    """None when config ``current`` continues the run saved with ``saved``; else the reason."""
    # A key that did not exist when the run started (newer empp-ff) had its default then.
    defaults = _flatten(Config().to_dict())
    old, new = {**defaults, **_flatten(saved)}, _flatten(current)
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in RESUMABLE_CHANGES)
    if not changed:
        return None
    details = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:8])
    if finished:
        return (f"{run_dir} holds a finished run ({epochs} epochs) with a different config ({details}). "
                "Choose another run_dir for the new run (e.g. --set run_dir=...), or delete this one.")
    return (f"{run_dir} holds an interrupted run (after epoch {epochs}) with a different config ({details}). "
            "Resume it with the same config, or choose another run_dir.")


def check_resumable(saved: Dict[str, Any], cfg: Config, run_dir: Path, epochs: int = 0,
                    finished: bool = False) -> None:
    """ConfigError listing the keys in which ``cfg`` differs from the ``saved`` config."""
    problem = resume_problem(saved, cfg.to_dict(), run_dir, epochs, finished)
    if problem:
        raise ConfigError(problem)
