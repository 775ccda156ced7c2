"""The training objective: auxiliary weight schedules, gradient balancing, gradient diagnostics,
and the refit of the reference energies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from empp_ff.auxiliary.weighting import AuxWeighting
from empp_ff.train.energy_offset import fit_offsets, refit_reference_energies


def test_schedules():
    const = AuxWeighting(schedule="constant")
    lin = AuxWeighting(schedule="linear", decay_start=0.2, decay_end=0.6)
    cos = AuxWeighting(schedule="cosine", decay_end=0.5)
    assert const.factor(0.0) == const.factor(0.99) == 1.0
    assert lin.factor(0.1) == 1.0 and lin.factor(0.4) == pytest.approx(0.5) and lin.factor(0.7) == 0.0
    assert cos.factor(0.0) == 1.0 and cos.factor(0.25) == pytest.approx(0.5) and cos.factor(0.5) == 0.0
    with pytest.raises(ValueError, match="empp.decay_start"):
        AuxWeighting(decay_start=0.5, decay_end=0.5).validate_weighting("empp")


def test_offset_fit_is_the_least_squares_optimum():
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 6, size=(40, 3)).astype(float)
    true = np.array([0.1, -0.3, 0.05])
    residual = counts @ true + 1e-3 * rng.standard_normal(40)
    np.testing.assert_allclose(fit_offsets(residual, counts), true, atol=1e-3)
    # one composition (an MD17 molecule): only the sum is identifiable, and it is exact
    single = np.tile([[9.0, 7.0, 4.0]], (10, 1))
    delta = fit_offsets(np.full(10, 0.5), single)
    assert float(single[0] @ delta) == pytest.approx(0.5)


@pytest.mark.slow
def test_refit_removes_a_constant_energy_offset_and_keeps_forces():
    from empp_ff.testing.batches import collate, molecule_graph, random_molecule
    from empp_ff.testing.models import demo_potential

    potential = demo_potential(seed=0, perturb=0.2)
    g = torch.Generator().manual_seed(1)
    _, z = random_molecule(8, [1, 6, 8], g)
    batches = []
    for _ in range(6):  # labels = the model's own energies + 0.25 eV: a pure offset
        pos, _ = random_molecule(8, [1, 6, 8], g)
        b = collate([molecule_graph(pos, z, potential.r_max)])
        e = potential(b.positions, b.atomic_numbers, b.edge_index, b.shifts, b.batch, 1, compute_forces=False)
        batches.append(collate([molecule_graph(pos, z, potential.r_max, energy=float(e["energy"].detach()) + 0.25)]))
    first = batches[0]
    args = (first.positions, first.atomic_numbers, first.edge_index, first.shifts, first.batch, 1)
    before = potential(*args)
    assert _mean_error_mev(potential, batches) == pytest.approx(-250.0, abs=1e-6)  # the offset shows
    stats = refit_reference_energies(potential, batches, torch.device("cpu"))
    assert abs(_mean_error_mev(potential, batches)) < 1e-6
    assert stats["mean_residual_before_ev"] == pytest.approx(0.25, abs=1e-9)
    assert abs(stats["mean_residual_after_ev"]) < 1e-9
    after = potential(*args)
    assert float(after["energy"] - before["energy"]) == pytest.approx(0.25, abs=1e-9)
    torch.testing.assert_close(after["forces"], before["forces"])
    # the spec (which rebuilds the model and goes into model files) carries the refitted values
    spec_e0 = np.asarray(potential.backbone.spec_dict["atomic_energies"])
    np.testing.assert_allclose(spec_e0, potential.backbone.mace.atomic_energies_fn.atomic_energies.numpy())


def _mean_error_mev(potential, batches) -> float:
    """The evaluation's mean signed energy error (prediction - label)."""
    from empp_ff.train.metrics import ErrorAccumulator

    acc = ErrorAccumulator()
    for b in batches:
        e = potential(b.positions, b.atomic_numbers, b.edge_index, b.shifts, b.batch, 1, compute_forces=False)
        acc.add({"energy": e["energy"].reshape(-1)}, b)
    summary = acc.summary()
    assert abs(summary["energy_mean_error_mev"]) <= summary["energy_mae_mev"] + 1e-9
    return summary["energy_mean_error_mev"]


def _objective(grad_balance, weight=2.0):
    from empp_ff.empp.auxiliary import EMPPAuxiliary
    from empp_ff.testing.batches import collate, molecule_graph, random_molecule
    from empp_ff.testing.models import demo_potential
    from empp_ff.train.config import load_config
    from empp_ff.train.objective import Objective
    from empp_ff.train.training_model import TrainingModel

    cfg = load_config(None, [f"empp.grad_balance={grad_balance}", f"empp.weight={weight}", "empp.enabled=true"])
    potential = demo_potential(seed=0, perturb=0.2)
    stats = {"energy_per_atom_mean": 0.0, "energy_per_atom_std": 1.0, "force_scale": 1.0}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        empp = EMPPAuxiliary(cfg.empp)
        model = TrainingModel(potential, [(empp, empp.build_module(potential.backbone, stats).double())]).train()
    g = torch.Generator().manual_seed(2)
    graphs = []
    for n in (6, 8):
        pos, z = random_molecule(n, [1, 6, 8], g)
        graphs.append(molecule_graph(pos, z, potential.r_max, energy=-900.0,
                                     forces=torch.randn(n, 3, generator=g, dtype=torch.float64)))
    return Objective(model, model, cfg, 1.0, 100, True, True), model, collate(graphs)


def _flat(params) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])


def _grads(objective, model, batch):
    model.zero_grad(set_to_none=True)
    losses, terms, _ = objective.losses(batch, torch.Generator().manual_seed(7), step=0)
    norms = objective.gradient_norms(losses, terms)
    objective.backward(losses, terms)
    shared = objective.backbone_parameters()
    return _flat(shared), norms, terms


@pytest.mark.slow
def test_grad_balance_scales_the_empp_gradient_to_a_fraction_of_the_supervised_one():
    objective, model, batch = _objective(grad_balance=0.3)
    total, norms, _ = _grads(objective, model, batch)
    alone = {}
    for name in ("supervised", "empp"):  # each term's gradient on its own
        model.zero_grad(set_to_none=True)
        _, terms, _ = objective.losses(batch, torch.Generator().manual_seed(7), step=0)
        terms[name][0].backward()
        alone[name] = _flat(objective.backbone_parameters())
    empp_part = total - alone["supervised"]
    assert float(empp_part.norm()) == pytest.approx(0.3 * float(alone["supervised"].norm()), rel=1e-6)
    cos = torch.nn.functional.cosine_similarity(empp_part, alone["empp"], dim=0)  # same direction as EMPP's
    assert float(cos) == pytest.approx(1.0, abs=1e-9)
    assert norms["grad_norm_empp"] > 0 and -1 <= norms["grad_cos_forces_empp"] <= 1
    assert norms["grad_norm_forces"] + norms["grad_norm_energy"] > 0


@pytest.mark.slow
def test_without_balance_the_backward_is_the_weighted_sum():
    objective, model, batch = _objective(grad_balance="null", weight=2.0)
    _, norms, _ = _grads(objective, model, batch)
    model.zero_grad(set_to_none=True)
    losses, terms, _ = objective.losses(batch, torch.Generator().manual_seed(7), step=0)
    terms["empp"][0].backward()
    empp = _flat(objective.backbone_parameters())
    assert float(empp.norm()) == pytest.approx(norms["grad_norm_empp"], rel=1e-9)
    assert float(terms["empp"][0]) == pytest.approx(2.0 * float(losses["empp_loss"]))
