"""Installed package versions (recorded in model files, plugin builds and the demo data)."""

from __future__ import annotations

from typing import Optional


def package_version(dist: str) -> Optional[str]:
    """The installed version of distribution ``dist``, or None when it is not installed."""
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
