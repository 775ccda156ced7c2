"""Derived files of a run directory (the converted store, splits.json) and whether
they are still current for the source data and the config.

The store's provenance records the source's fingerprint and the conversion
options; ``splits.json`` records the source's fingerprint, the number of
structures and the split config. A stale file is rebuilt when no checkpoint
depends on it, and refused when one does (see ``fingerprint.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

from empp_ff.train.rundir.fingerprint import describe_change, file_fingerprint, same_content

__all__ = ["conversion_options", "stale_store", "splits_fingerprint", "stale_splits"]


def conversion_options(cfg, fmt: str) -> Dict[str, Any]:
    d = cfg.data
    return {"format": fmt, "energy_key": d.energy_key, "forces_key": d.forces_key,
            "drop_nonfinite": bool(d.drop_nonfinite), "allow_missing_labels": bool(d.allow_missing_labels)}


def stale_store(provenance: Dict[str, Any], source: Path, options: Dict[str, Any]) -> Optional[str]:
    """Why a converted store does not (any longer) represent ``source`` with ``options``; None if it does."""
    # Stores converted before these options existed were converted with their defaults.
    defaults = {"drop_nonfinite": False, "allow_missing_labels": False}
    changed = [f"{k}: {provenance.get(k, defaults.get(k))!r} -> {v!r}" for k, v in options.items()
               if provenance.get(k, defaults.get(k)) != v]
    if changed:
        return "converted with other options (" + "; ".join(changed) + ")"
    if not same_content(provenance, source):
        return f"{source} changed since it was converted ({describe_change(provenance, source)})"
    return None


def splits_fingerprint(source: Path, n: int, split_config: Dict[str, Any],
                       source_fingerprint: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    fp = dict(source_fingerprint or file_fingerprint(source))
    fp.pop("path", None)
    return {"source": fp, "n": int(n), "split": split_config}


def stale_splits(splits_path: Path, source: Path, n: int, split_config: Dict[str, Any]) -> Optional[str]:
    """Why ``splits.json`` was not made for this data and split config; None if it was."""
    try:
        recorded = json.loads(splits_path.read_text()).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return f"{splits_path} is unreadable"
    if not recorded:
        return f"{splits_path} carries no fingerprint (written by an older empp-ff)"
    if recorded.get("split") != split_config:
        changed = [f"{k}: {recorded['split'].get(k)!r} -> {v!r}" for k, v in split_config.items()
                   if recorded["split"].get(k) != v]
        return "the split config changed (" + "; ".join(changed) + ")"
    if recorded.get("n") != n:
        return f"it was made for {recorded.get('n')} structures, the data have {n}"
    if not same_content(recorded.get("source"), source):
        return f"{source} changed since the splits were made ({describe_change(recorded.get('source'), source)})"
    return None
