"""Model precisions by name: the one table behind ``model.dtype``, the backbone
spec, ``empp-ff export --dtype``, the model files and the ASE calculator.

Importing this module does not import torch (the config layer uses the names).
"""

from __future__ import annotations

DTYPE_NAMES = ("float32", "float64")


def check_dtype_name(name: object, what: str = "dtype") -> str:
    """``name`` if it is a supported precision, else a ValueError naming ``what``."""
    if name not in DTYPE_NAMES:
        raise ValueError(f"{what} must be 'float32' or 'float64', got {name!r}")
    return str(name)


def torch_dtype(name: str):
    """``"float32"`` -> ``torch.float32``, ``"float64"`` -> ``torch.float64``."""
    import torch

    return {"float32": torch.float32, "float64": torch.float64}[check_dtype_name(name)]


def dtype_name(dtype) -> str:
    """``torch.float32`` -> ``"float32"`` (the inverse of :func:`torch_dtype`)."""
    return check_dtype_name(str(dtype).removeprefix("torch."))
