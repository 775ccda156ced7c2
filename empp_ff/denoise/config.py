"""Configuration of the coordinate-denoising auxiliary loss (the ``aux.denoise:`` block)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict

from empp_ff.auxiliary.weighting import AuxWeighting


@dataclass
class DenoiseConfig(AuxWeighting):
    """Denoising settings; ``weight``, ``schedule``, ``grad_balance`` and
    ``batch_fraction`` come from :class:`AuxWeighting`, as for EMPP."""

    enabled: bool = False
    # Standard deviation of the Gaussian displacement of every atom (Å).
    sigma: float = 0.05
    # DeNS force encoding: the clean structure's per-atom force (spherical harmonics of
    # F / force_scale) is added to every interaction's message path of the noisy copy.
    # Without it, denoising a non-equilibrium (MD) frame is ill-posed (DeNS, sec. 3).
    force_encoding: bool = True
    force_sh_lmax: int = 3
    head_channels: int = 16

    def validate(self) -> DenoiseConfig:
        self.validate_weighting("aux.denoise")
        if not self.sigma > 0:
            raise ValueError(f"aux.denoise.sigma must be > 0 (Å), got {self.sigma}")
        if self.force_sh_lmax < 0:
            raise ValueError(f"aux.denoise.force_sh_lmax must be >= 0, got {self.force_sh_lmax}")
        if self.head_channels < 1:
            raise ValueError(f"aux.denoise.head_channels must be >= 1, got {self.head_channels}")
        return self

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)
