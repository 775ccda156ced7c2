"""Configuration of the EMPP auxiliary loss (spec §8.1 names).

Plain types only (bool/int/float/str/list) so the trainer's config system can
embed it as the ``empp:`` block.

Project decision (EMPP_SPEC.md, "Project decisions"): the loss over the n masked
copies is the *mean* (paper eq. 8) by default; ``"sum"`` (reference code,
effective weight n·λ) is the option.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

from empp_ff.auxiliary.weighting import AuxWeighting
from empp_ff.model.parts import all_part_names, reinit_fragments

_MASK_REDUCTIONS = ("sum", "mean")
_PAIR_REDUCTIONS = ("global_mean", "per_atom_mean")
_RADIUS_MODES = ("paper", "reference")

@dataclass
class EMPPConfig(AuxWeighting):
    """EMPP's method settings; ``weight``, ``schedule``, ``grad_balance`` and
    ``batch_fraction`` come from :class:`AuxWeighting`."""

    enabled: bool = False
    # Self-supervised EMPP weights a run starts from: a bundled name, a run directory or
    # a checkpoint (empp_ff/empp/pretrained); null: random weights.
    pretrained: Optional[str] = None
    # Parts of the backbone that keep their fresh initial values instead of the pretrained
    # ones (names in empp_ff.model.parts, per backbone), e.g. [elements] carries only what
    # is not indexed by element.
    pretrained_reinit: List[str] = field(default_factory=list)
    num_masks: int = 1
    # The paper's MD17 value is 50; at the budgets this package is used with (tens of
    # epochs) it made forces 12-41 % worse and 1 is neutral (benchmarks/results/
    # empp_accuracy_cpu.md, empp_gradients_cpu.md), so 1 is the default.
    weight: float = 1.0
    # EMPP replay (fine-tuning): unlabelled structures of another data file (any supported
    # format; its labels are ignored) get the EMPP loss at replay_weight in every step, beside
    # the supervised batch, so what EMPP pre-training learnt is rehearsed rather than forgotten
    # (as mace_run_train's multihead replay does for a foundation model). Structures with
    # elements the run's data lack are left out. null: no replay.
    replay_data: Optional[str] = None
    replay_weight: float = 1.0
    replay_batch_size: Optional[int] = None  # None: train.batch_size
    mask_loss_reduction: str = "mean"
    pair_reduction: str = "global_mean"
    # Conditioning (spec §3.4).
    use_energy_label: bool = True
    use_force_label: bool = True
    energy_gauss_num: int = 64
    energy_gauss_range: List[float] = field(default_factory=lambda: [-3.0, 3.0])
    energy_clamp: bool = True
    force_sh_lmax: int = 3
    cond_dim: int = 32
    # Position head (spec §4).
    head_channels: int = 32
    head_lmax: Optional[int] = None  # None: the backbone features' max l
    grid_res: List[int] = field(default_factory=lambda: [100, 101])
    dir_mlp_hidden: int = 16
    tau: float = 0.1
    tau_label: float = 0.1
    radius_bins: int = 128
    radius_range: List[float] = field(default_factory=lambda: [0.9, 5.0])
    radius_sigma: float = 0.5
    radius_label_mode: str = "paper"
    radius_tau: float = 1.0
    radius_mlp_hidden: int = 64

    def validate(self, feature_lmax: Optional[int] = None) -> EMPPConfig:
        """Raise ``ValueError`` naming the bad field; ``feature_lmax`` (the
        backbone features' max l), when given, bounds ``head_lmax``."""

        def bad(msg: str):
            raise ValueError(f"empp config: {msg}")

        if not isinstance(self.num_masks, int) or self.num_masks < 1:
            bad(f"num_masks must be an integer >= 1, got {self.num_masks!r}")
        try:
            self.validate_weighting("empp")
        except ValueError as exc:
            bad(str(exc).removeprefix("empp."))
        unknown_parts = [p for p in self.pretrained_reinit if p not in all_part_names()]
        if unknown_parts:
            bad(f"pretrained_reinit: unknown parts {unknown_parts}; known: {all_part_names()}")
        if not self.replay_weight >= 0:
            bad(f"replay_weight must be >= 0, got {self.replay_weight}")
        if self.replay_batch_size is not None and self.replay_batch_size < 1:
            bad(f"replay_batch_size must be >= 1 or null, got {self.replay_batch_size}")
        if self.mask_loss_reduction not in _MASK_REDUCTIONS:
            bad(f"mask_loss_reduction must be one of {_MASK_REDUCTIONS}, got {self.mask_loss_reduction!r}")
        if self.pair_reduction not in _PAIR_REDUCTIONS:
            bad(f"pair_reduction must be one of {_PAIR_REDUCTIONS}, got {self.pair_reduction!r}")
        if self.radius_label_mode not in _RADIUS_MODES:
            bad(f"radius_label_mode must be one of {_RADIUS_MODES}, got {self.radius_label_mode!r}")
        if self.energy_gauss_num < 2:
            bad(f"energy_gauss_num must be >= 2, got {self.energy_gauss_num}")
        if len(self.energy_gauss_range) != 2 or not self.energy_gauss_range[0] < self.energy_gauss_range[1]:
            bad(f"energy_gauss_range must be [low, high] with low < high, got {self.energy_gauss_range}")
        if self.force_sh_lmax < 0:
            bad(f"force_sh_lmax must be >= 0, got {self.force_sh_lmax}")
        for name in ("cond_dim", "head_channels", "dir_mlp_hidden", "radius_bins", "radius_mlp_hidden"):
            if getattr(self, name) < 1:
                bad(f"{name} must be >= 1, got {getattr(self, name)}")
        if len(self.grid_res) != 2 or min(self.grid_res) < 2:
            bad(f"grid_res must be [res_beta, res_alpha], both >= 2, got {self.grid_res}")
        for name in ("tau", "tau_label", "radius_sigma", "radius_tau"):
            if not getattr(self, name) > 0:
                bad(f"{name} must be > 0, got {getattr(self, name)}")
        if len(self.radius_range) != 2 or not 0 <= self.radius_range[0] < self.radius_range[1]:
            bad(f"radius_range must be [low, high] with 0 <= low < high, got {self.radius_range}")
        if self.head_lmax is not None and self.head_lmax < 0:
            bad(f"head_lmax must be >= 0 or None, got {self.head_lmax}")
        if feature_lmax is not None and self.head_lmax is not None and self.head_lmax > feature_lmax:
            bad(
                f"head_lmax={self.head_lmax} exceeds the backbone features' max l={feature_lmax}: "
                "the head would have no path to those degrees (their output would be zero). "
                "Lower head_lmax, use null (= the features' max l), or raise the backbone's max_L"
            )
        return self

    @property
    def replays(self) -> bool:
        """Whether EMPP replay runs: on, with replay data and a replay weight."""
        return self.enabled and bool(self.replay_data) and self.replay_weight > 0

    @property
    def trains(self) -> bool:
        """Whether the EMPP module is trained: on, with a weight or with replay. ``weight: 0``
        without replay keeps only the ``pretrained`` start (and costs nothing per step)."""
        return self.enabled and (self.weight > 0 or self.replays)

    def reinit_patterns(self, backbone: str = "mace") -> tuple:
        """Parameter-name fragments that ``pretrained_reinit`` leaves at their fresh values
        on ``backbone`` (ValueError for a part that backbone does not have)."""
        return reinit_fragments(backbone, self.pretrained_reinit)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> EMPPConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"empp config: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**d)
