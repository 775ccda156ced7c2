"""Fingerprints of what a run directory's derived files were made from.

The converted store (``RUN_DIR/data/*.h5``) and ``splits.json`` are derived from
the source data file and a few config keys. Each records the fingerprint of its
inputs: the source file's size, modification time and sha256, plus the config
that shaped it. On the next start a mismatch means the derived file is stale:
it is rebuilt when no checkpoint depends on it yet, and refused otherwise (a
resumed run must see the data it started with).

Checking is cheap: the sha256 is recomputed only when size or modification time
differ from the record (a ``touch`` or a copy with the same content still
matches).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional, Union

from empp_ff.data.conversion import sha256_file

__all__ = ["file_fingerprint", "same_content", "describe_change"]


def file_fingerprint(path: Union[str, os.PathLike], sha256: Optional[str] = None) -> Dict[str, Any]:
    """{path, size, mtime_ns, sha256} of ``path`` (``sha256`` given when already known)."""
    st = os.stat(path)
    return {"path": str(Path(path).resolve()), "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns),
            "sha256": sha256 or sha256_file(path)}


def same_content(recorded: Optional[Dict[str, Any]], path: Union[str, os.PathLike]) -> bool:
    """Whether ``path`` still holds what ``recorded`` (a :func:`file_fingerprint`) describes."""
    if not recorded or "sha256" not in recorded:
        return False
    st = os.stat(path)
    if recorded.get("size") is not None and int(recorded["size"]) != st.st_size:
        return False
    if recorded.get("mtime_ns") is not None and int(recorded["mtime_ns"]) == st.st_mtime_ns:
        return True
    return sha256_file(path) == recorded["sha256"]


def describe_change(recorded: Optional[Dict[str, Any]], path: Union[str, os.PathLike]) -> str:
    if not recorded:
        return "no fingerprint recorded"
    now = os.stat(path).st_size
    parts = [f"size {recorded.get('size')} -> {now} bytes"] if recorded.get("size") != now else []
    parts.append(f"sha256 {str(recorded.get('sha256'))[:12]}... -> {sha256_file(path)[:12]}...")
    return ", ".join(parts)
