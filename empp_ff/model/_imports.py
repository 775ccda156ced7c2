"""Import mace/e3nn without leaving a process-wide side effect behind.

e3nn 0.4.4 reads its constants with ``torch.load`` at import time, which fails
on torch >= 2.6 unless ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``; ``import mace``
sets that variable for the whole process and never unsets it (mace#...; see
ANCHORS.md finding 5). We set it only for the duration of the import and then
restore the user's environment exactly as it was.
"""

from __future__ import annotations

import contextlib
import os

_VAR = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


@contextlib.contextmanager
def _weights_only_load_allowed():
    previous = os.environ.get(_VAR)
    os.environ[_VAR] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(_VAR, None)
        else:
            os.environ[_VAR] = previous


def import_mace_modules():
    """Return ``mace.modules`` (and make sure e3nn is importable)."""
    with _weights_only_load_allowed():
        import e3nn.o3  # noqa: F401  (loads its constants with torch.load)
        import mace.modules as modules
    return modules


def import_e3nn_o3():
    with _weights_only_load_allowed():
        import e3nn.o3 as o3
    return o3
