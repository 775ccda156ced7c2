"""Tiny untrained models for tests, examples and speed benchmarks.

The weights are random (seeded): such a model has the architecture's cost and
smoothness but no chemistry. Use a trained export for anything physical.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

# Rough isolated-atom energies (eV) so that totals look like real ones.
_E0 = {1: -13.6, 6: -1029.8, 7: -1485.3, 8: -2041.8}

# The LAMMPS tests' model (make_model): cheaper radial basis, and forces scaled up
# to O(1 eV/Å), because an untrained model is nearly flat and tests must be sensitive.
_PAIR_STYLE_TEST_ARCHITECTURE = dict(correlation=2, max_ell=2, num_bessel=6, mlp_irreps="16x0e",
                                     avg_num_neighbors=8.0)


def demo_spec(
    atomic_numbers: Sequence[int] = (1, 6, 8),
    *,
    num_channels: int = 8,
    max_L: int = 1,
    num_interactions: int = 2,
    correlation: int = 3,
    r_max: float = 4.0,
    dtype: str = "float64",
    avg_num_neighbors: float = 8.0,
    **overrides: Any,
):
    """A small ``BackboneSpec`` (``overrides``: any other spec field)."""
    from empp_ff.model.spec import BackboneSpec

    species = sorted(int(z) for z in atomic_numbers)
    kwargs: Dict[str, Any] = dict(
        atomic_numbers=species,
        atomic_energies=[_E0.get(z, -100.0 * z) for z in species],
        num_channels=num_channels,
        max_L=max_L,
        num_interactions=num_interactions,
        correlation=correlation,
        r_max=r_max,
        radial_mlp=[16, 16],
        mlp_irreps="8x0e",
        avg_num_neighbors=avg_num_neighbors,
        scale=1.0,
        shift=0.0,
        dtype=dtype,
    )
    kwargs.update(overrides)
    return BackboneSpec(**kwargs)


def demo_potential(spec=None, seed: int = 0, perturb: float = 0.0, **spec_kwargs: Any):
    """A ``Potential`` with seeded random weights (eval mode).

    ``perturb`` adds that much seeded Gaussian noise to every weight (the
    zero-initialised parts included), so that the model is far from flat.
    The global RNG is forked, so the caller's random state is untouched.
    """
    import torch

    from empp_ff.model.backbone import build_backbone
    from empp_ff.model.potential import Potential

    spec = spec if spec is not None else demo_spec(**spec_kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        potential = Potential(build_backbone(spec))
        if perturb:
            with torch.no_grad():
                for p in potential.parameters():
                    p.add_(perturb * torch.randn_like(p))
    return potential.eval()


def demo_checkpoint(
    path: Union[str, Path],
    spec=None,
    seed: int = 0,
    ema: bool = False,
    val_metrics: Optional[Dict[str, float]] = None,
    **spec_kwargs: Any,
) -> Path:
    """Write an empp-ff checkpoint holding a random-weight model (``ema``: also an
    EMA state, a perturbed copy, so tests can tell the two apart)."""
    import torch

    spec = spec if spec is not None else demo_spec(**spec_kwargs)
    potential = demo_potential(spec, seed=seed)
    state = {k: v.detach().clone() for k, v in potential.state_dict().items()}
    ema_state = None
    if ema:
        gen = torch.Generator().manual_seed(seed + 1)
        params = {name for name, _ in potential.named_parameters()}
        ema_state = {
            k: (v + 0.05 * torch.randn(v.shape, generator=gen, dtype=v.dtype))
            if k in params
            else v.clone()
            for k, v in state.items()
        }
    return _save_checkpoint(path, spec, state, ema_state, val_metrics)


def _save_checkpoint(path, spec, state, ema_state=None, val_metrics=None) -> Path:
    from empp_ff.train.checkpoint import save_checkpoint

    save_checkpoint(
        {
            "config": {"demo": True, "note": "random weights, not trained"},
            "backbone_spec": spec.to_dict(),
            "potential_state": state,
            "ema_potential_state": ema_state,
            "empp_state": None,
            "val_metrics": dict(val_metrics or {}),
            "epoch": 0,
            "step": 0,
        },
        path,
    )
    return Path(path)


def _pair_style_test_potential(atomic_numbers, dtype, num_channels, num_interactions, r_max, seed, perturb, scale,
                               architecture=None):
    fields = {**_PAIR_STYLE_TEST_ARCHITECTURE, **(architecture or {})}
    spec = demo_spec(atomic_numbers, dtype=dtype, num_channels=num_channels, num_interactions=num_interactions,
                     r_max=r_max, scale=3.0 if scale is None else float(scale), **fields)
    return spec, demo_potential(spec, seed=seed, perturb=perturb)


def make_model(
    path,
    *,
    atomic_numbers: Sequence[int] = (1, 6, 8),
    dtype: str = "float64",
    num_channels: int = 8,
    num_interactions: int = 2,
    r_max: float = 3.5,
    seed: int = 0,
    perturb: float = 0.05,
    scale: Optional[float] = None,
    checkpoint: bool = False,
    layerwise: bool = True,
    architecture: Optional[Dict[str, Any]] = None,
) -> Path:
    """Write a small untrained model file obeying the model-file contract (the
    LAMMPS tests' model: see ``_PAIR_STYLE_TEST_ARCHITECTURE``): TorchScript, or an
    AOTInductor package when ``path`` ends in ``.pt2`` (compiling takes minutes).
    ``checkpoint=True`` writes a training checkpoint of the same weights instead.

    ``perturb`` adds seeded noise to all weights (so that the untrained model is far
    from flat: sensitive accuracy tests); ``perturb=0`` gives a gentler model.
    ``layerwise=False`` writes a file without the halo entry points, like the files
    exported before they existed. ``architecture``: other spec fields, e.g.
    ``{"backbone": "torchmd_et", "num_heads": 2}``."""
    from empp_ff.export import export_potential

    spec, potential = _pair_style_test_potential(atomic_numbers, dtype, num_channels, num_interactions, r_max,
                                                 seed, perturb, scale, architecture)
    path = Path(path)
    if checkpoint:
        return _save_checkpoint(path, spec, {k: v.detach().clone() for k, v in potential.state_dict().items()})
    export_potential(potential, path, layerwise=layerwise)
    return path


def write_untrained_demo_model(path: Union[str, Path]) -> Path:
    """Export an UNTRAINED model (random weights, 8 channels, r_max 5 Å) to ``path``, so that the
    MD examples can be tried end to end before any training (no chemistry!)."""
    import tempfile

    from empp_ff.export import export_model

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = demo_checkpoint(Path(tmp) / "demo.pt", num_channels=8, r_max=5.0, dtype="float64")
        export_model(checkpoint, path)
    return Path(path)
