"""Coordinate denoising (Noisy Nodes / DeNS style), an auxiliary loss to compare EMPP with.

Training only, like EMPP: ``config`` (DenoiseConfig), ``module`` (DenoiseModule: noisy
copy of the batch -> backbone -> equivariant vector head -> noise MSE). Imports are
lazy: ``import empp_ff.denoise`` pulls in neither e3nn nor mace.
"""

__all__ = ["DenoiseConfig", "DenoiseModule"]


def __getattr__(name):
    if name == "DenoiseConfig":
        from empp_ff.denoise.config import DenoiseConfig

        return DenoiseConfig
    if name == "DenoiseModule":
        from empp_ff.denoise.module import DenoiseModule

        return DenoiseModule
    raise AttributeError(f"module 'empp_ff.denoise' has no attribute {name!r}")
