"""Coordinate-denoising auxiliary: equivariance, the loss's meaning, conditioning, gradients."""

from __future__ import annotations

import pytest
import torch

from empp_ff.denoise.config import DenoiseConfig
from empp_ff.denoise.module import DenoiseModule
from empp_ff.testing.batches import collate, molecule_graph, random_molecule
from empp_ff.testing.models import demo_potential


@pytest.fixture(scope="module")
def setup():
    potential = demo_potential(seed=3, perturb=0.3, num_channels=8, correlation=2)
    g = torch.Generator().manual_seed(5)
    graphs = []
    for n in (7, 9):
        pos, z = random_molecule(n, [1, 6, 8], g)
        forces = torch.randn(n, 3, generator=g, dtype=torch.float64)
        graphs.append(molecule_graph(pos, z, potential.r_max, energy=-100.0, forces=forces))
    return potential, collate(graphs)


def _module(potential, **kw):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = DenoiseModule(DenoiseConfig(enabled=True, **kw), potential.backbone, force_scale=1.0).double()
        # a non-zero head (e3nn initialises it randomly; perturb to be sure it is not degenerate)
        for p in module.parameters():
            p.data.add_(0.1 * torch.randn_like(p))
    return module


def _rotated(batch, R):
    b = batch.clone()
    b.positions = batch.positions @ R.T
    b.forces = batch.forces @ R.T
    return b


def _rotation(seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q * torch.sign(torch.det(q))


@pytest.mark.parametrize("force_encoding", [False, True])
def test_predicted_noise_rotates_with_the_molecule(setup, force_encoding):
    potential, batch = setup
    module = _module(potential, force_encoding=force_encoding)
    eps = torch.randn(batch.positions.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    R = _rotation(2)

    def predicted(b, e):
        noisy = b.positions + module.config.sigma * e
        per_layer = module._conditioning(b, use_labels=True)
        nodes = torch.arange(b.positions.shape[0])
        if per_layer is None:
            _, feats = potential.backbone(noisy, b.atomic_numbers, b.edge_index, b.shifts)
        else:
            with potential.backbone.conditioning(per_layer, nodes):
                _, feats = potential.backbone(noisy, b.atomic_numbers, b.edge_index, b.shifts)
        return module.head(feats)

    p = predicted(batch, eps)
    p_rot = predicted(_rotated(batch, R), eps @ R.T)
    assert p.abs().max() > 1e-3  # not trivially zero
    torch.testing.assert_close(p_rot, p @ R.T, atol=1e-9, rtol=1e-7)
    # and the loss is invariant
    l1 = module(potential.backbone, batch, eps=eps)["loss"]
    l2 = module(potential.backbone, _rotated(batch, R), eps=eps @ R.T)["loss"]
    assert float(l1) == pytest.approx(float(l2), rel=1e-9)


def test_loss_is_one_for_a_zero_prediction_and_trains_the_backbone(setup):
    potential, batch = setup
    module = _module(potential, force_encoding=True)
    eps = torch.randn(batch.positions.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    with torch.no_grad():
        for p in module.head.linear_out.parameters():
            p.zero_()
    loss = module(potential.backbone, batch, eps=eps)["loss"]
    assert float(loss) == pytest.approx(float(eps.pow(2).mean()), rel=1e-12)  # ≈ 1 for unit noise
    module = _module(potential, force_encoding=True)
    potential.zero_grad()
    module(potential.backbone, batch, eps=eps)["loss"].backward()
    grads = [p.grad for p in potential.backbone.parameters() if p.grad is not None]
    assert grads and max(float(g.abs().max()) for g in grads) > 0
    assert any(p.grad is not None and float(p.grad.abs().max()) > 0 for p in module.force_encoding.parameters())


def test_force_encoding_changes_the_prediction_and_needs_labels(setup):
    potential, batch = setup
    module = _module(potential, force_encoding=True)
    eps = torch.zeros_like(batch.positions)
    with_labels = module.head(_features(potential, module, batch, True))
    without = module.head(_features(potential, module, batch, False))
    assert (with_labels - without).abs().max() > 1e-4
    assert module._conditioning(batch, use_labels=False) is None  # no leak of labels when told not to
    assert float(module(potential.backbone, batch, eps=eps, use_labels=True)["loss"]) >= 0


def _features(potential, module, batch, use_labels):
    per_layer = module._conditioning(batch, use_labels)
    if per_layer is None:
        return potential.backbone(batch.positions, batch.atomic_numbers, batch.edge_index, batch.shifts)[1]
    with potential.backbone.conditioning(per_layer, torch.arange(batch.positions.shape[0])):
        return potential.backbone(batch.positions, batch.atomic_numbers, batch.edge_index, batch.shifts)[1]


def test_clean_pass_unchanged_after_a_denoising_pass(setup):
    potential, batch = setup
    module = _module(potential, force_encoding=True)
    args = (batch.positions, batch.atomic_numbers, batch.edge_index, batch.shifts, batch.batch, 2)
    before = potential(*args, compute_forces=False)["energy"].clone()
    module(potential.backbone, batch, generator=torch.Generator().manual_seed(0))
    after = potential(*args, compute_forces=False)["energy"]
    assert torch.equal(before, after)


def test_bad_config_names_the_key():
    with pytest.raises(ValueError, match="aux.denoise.sigma"):
        DenoiseConfig(sigma=0.0).validate()
    with pytest.raises(ValueError, match="aux.denoise.batch_fraction"):
        DenoiseConfig(batch_fraction=0.0).validate()


# --- validation through the AuxiliaryLoss interface (issue 27) -------------------------------

def _denoise_model(potential):
    from empp_ff.denoise.auxiliary import DenoiseAuxiliary
    from empp_ff.train.training_model import TrainingModel

    aux = DenoiseAuxiliary(DenoiseConfig(enabled=True))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = aux.build_module(potential.backbone, {"force_scale": 1.0}).double()
    return aux, TrainingModel(potential, [(aux, module)])


def test_denoising_is_validated_with_the_same_noise_every_epoch(setup):
    """val_denoise_loss: the mean of the module's loss over the validation batches, drawn from the
    fixed validation stream (seed + validation_seed), so two epochs' values differ only by the weights."""
    from empp_ff.data.dataset import epoch_generator
    from empp_ff.train.distributed import DistContext
    from empp_ff.train.evaluate import validation_losses

    potential, batch = setup
    aux, model = _denoise_model(potential)
    loader = [batch, batch]
    first = validation_losses(model, aux, loader, 7, True, torch.device("cpu"), DistContext())
    again = validation_losses(model, aux, loader, 7, True, torch.device("cpu"), DistContext())
    assert set(first) == {"val_denoise_loss"} and first == again
    generator = epoch_generator(7 + aux.validation_seed, 0)
    with torch.no_grad():
        by_hand = [float(model.denoise(potential.backbone, b, generator)["loss"]) for b in loader]
    assert first["val_denoise_loss"] == pytest.approx(sum(by_hand) / 2, rel=1e-12)
    assert 0 < first["val_denoise_loss"] < 10


@pytest.mark.slow
def test_a_denoising_run_reports_its_validation_loss(tmp_path, tiny_train_overrides):
    import csv
    import math

    from empp_ff.train.config import load_config
    from empp_ff.train.trainer import run_training

    lines = []
    run_training(load_config(None, tiny_train_overrides(tmp_path / "run", epochs=1, **{"aux.denoise.enabled": True})),
                 log=lines.append)
    row = next(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert math.isfinite(float(row["val_denoise_loss"])) and float(row["val_denoise_loss"]) > 0
    assert math.isfinite(float(row["denoise_loss"])) and row["val_empp_loss"] == ""
    assert any("denoise " in line and "(val " in line for line in lines), lines
