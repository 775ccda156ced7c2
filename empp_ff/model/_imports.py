"""Import mace/e3nn without leaving a process-wide side effect behind.

e3nn 0.4.4 reads its constants with ``torch.load`` at import time, which fails
on torch >= 2.6 unless ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``; ``import mace``
sets that variable for the whole process and never unsets it (mace#...; see
ANCHORS.md finding 5). We set it only for the duration of the import and then
restore the user's environment exactly as it was.

Two messages of these imports are not for our users and are silenced here, at
their source, and nowhere else: torch's warning that the variable is set
(e3nn's own ``torch.load``), and mace's ``print`` that cuequivariance is not
installed (on stdout, where it would break ``--json`` output). Building e3nn
modules scripts them with TorchScript, which warns about mace's annotations:
:func:`quiet_torchscript_build` silences that one warning around a build.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import warnings

_VAR = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
_CUEQ_NOTICE = "cuequivariance or cuequivariance_torch is not available"


@contextlib.contextmanager
def _weights_only_load_allowed():
    previous = os.environ.get(_VAR)
    os.environ[_VAR] = "1"
    captured = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(captured):
            warnings.filterwarnings("ignore", message=f"Environment variable {_VAR} detected")
            yield
    finally:
        if previous is None:
            os.environ.pop(_VAR, None)
        else:
            os.environ[_VAR] = previous
        # Anything else printed during the import still reaches the user, on stderr.
        rest = [line for line in captured.getvalue().splitlines() if _CUEQ_NOTICE not in line]
        if rest:
            print("\n".join(rest), file=sys.stderr)


@contextlib.contextmanager
def quiet_torchscript_build():
    """Silence TorchScript's 'instance-level annotations' UserWarning (and torch's
    deprecation notice of ``torch.jit.script``), which every e3nn/mace module build
    raises once per code-generated block, for this block only."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="The TorchScript type system doesn't support instance-level annotations",
            category=UserWarning,
        )
        warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=DeprecationWarning)
        yield


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


_WARP_NO_CUDA = "Warp CUDA warning: Could not find or load the NVIDIA CUDA driver"


@contextlib.contextmanager
def _native_stderr_without(fragment: str):
    """Send file descriptor 2 to a temporary file for the block (native libraries write
    there directly), then pass on every line but those containing ``fragment``."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            rest = [line for line in tmp.read().decode(errors="replace").splitlines() if fragment not in line]
            if rest:
                print("\n".join(rest), file=sys.stderr)


def import_torchmdnet_et():
    """torchmd-net's Equivariant Transformer blocks (the ``et`` extra):
    ``(EquivariantMultiHeadAttention, ExpNormalSmearing, NeighborEmbedding, act_class_mapping)``.

    torchmd-net initialises NVIDIA Warp at import, which prints a banner on stdout (kept
    off by raising warp's log level for the import only) and, without a GPU driver, a
    warning from native code on stderr (dropped here, at its source)."""
    try:
        import warp
    except ImportError as exc:
        raise ImportError("model.backbone=torchmd_et needs torchmd-net: pip install 'empp-ff[et]'") from exc
    previous = warp.config.log_level
    warp.config.log_level = max(previous, warp.LOG_WARNING)
    try:
        with _native_stderr_without(_WARP_NO_CUDA):
            from torchmdnet.models.torchmd_et import EquivariantMultiHeadAttention
            from torchmdnet.models.utils import ExpNormalSmearing, NeighborEmbedding, act_class_mapping
    finally:
        warp.config.log_level = previous
    return EquivariantMultiHeadAttention, ExpNormalSmearing, NeighborEmbedding, act_class_mapping
