"""The error every model-file reader raises for a file it cannot use (torch-free)."""

from __future__ import annotations


class ModelFileError(ValueError):
    """The file exists but is not a usable empp-ff model file (not one, corrupted, from a
    newer empp-ff, or a compiled package that cannot run here)."""
