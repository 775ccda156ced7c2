"""EMPPModule end to end: loss scale at init, gradients, batched = sequential masks,
no leakage into the clean pass, label switches, config validation."""

import math

import pytest
import torch

from empp_ff.empp.config import EMPPConfig
from empp_ff.empp.module import EMPPModule
from empp_ff.model.backbone import MACEBackbone
from empp_ff.model.spec import BackboneSpec
from empp_ff.testing.batches import collate, molecule_graph, random_molecule

SPECIES = [1, 6, 8]
E0 = {1: -13.0, 6: -1000.0, 8: -2000.0}
STATS = dict(energy_per_atom_mean=-2.0, energy_per_atom_std=0.5, force_scale=1.5)


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    spec = BackboneSpec(
        atomic_numbers=SPECIES, atomic_energies=[-13.0, -1000.0, -2000.0], num_channels=8, max_L=2,
        num_interactions=2, correlation=2, radial_mlp=[8], avg_num_neighbors=4.0, dtype="float64",
    )
    return MACEBackbone(spec)


@pytest.fixture(scope="module")
def module(backbone):
    torch.manual_seed(1)
    config = EMPPConfig(enabled=True, num_masks=3, mask_loss_reduction="sum", grid_res=[30, 31])
    return EMPPModule(config, backbone, STATS)


def _batch(sizes=(6, 5, 4), seed=0, energy=True, forces=True):
    g = torch.Generator().manual_seed(seed)
    graphs = []
    for n in sizes:
        p, z = random_molecule(n, SPECIES, g)
        f = torch.randn(n, 3, generator=g, dtype=torch.float64) if forces else None
        e0 = sum(E0[int(a)] for a in z)
        e = e0 + n * (-2.0 + 0.3 * float(torch.randn(1, generator=g))) if energy else None  # y ~ N(0, 0.6)
        graphs.append(molecule_graph(p, z, 5.0, energy=e, forces=f))
    return collate(graphs)


def test_loss_at_initialisation_is_the_information_of_the_targets(backbone):
    # near-uniform predictions (tau = 1 flattens the direction logits of a fresh head):
    # KL(q‖p) ≈ KL(q‖uniform) = 2.13 nats (direction, L = 2) + 0.85 nats (radius, paper bins)
    torch.manual_seed(2)
    m = EMPPModule(EMPPConfig(enabled=True, tau=1.0), backbone, STATS)
    b = _batch((8, 8, 8, 8), seed=5)
    out = m(backbone, b, torch.Generator().manual_seed(0))
    assert out["num_pairs"].item() == 4 * 7
    assert abs(out["direction_kl"].item() - 2.13) < 0.25 * 2.13
    assert abs(out["radius_kl"].item() - 0.85) < 0.25 * 0.85
    assert abs(out["loss"].item() - 2.98) < 0.25 * 2.98
    assert torch.allclose(out["loss"], out["direction_kl"] + out["radius_kl"])  # 1 mask, global mean


def test_gradients_reach_the_backbone_head_and_encoders(backbone, module):
    backbone.zero_grad()
    module.zero_grad()
    out = module(backbone, _batch(), torch.Generator().manual_seed(0))
    out["loss"].backward()
    for t, inter in enumerate(backbone.mace.interactions):
        grads = [p.grad for p in inter.parameters() if p.grad is not None]
        assert grads and any(g.abs().max() > 0 for g in grads), f"no gradient in interaction {t}"
    for name in ("head", "direction", "radius"):
        assert any(p.grad is not None and p.grad.abs().max() > 0 for p in getattr(module, name).parameters()), name
    for t, layer in enumerate(module.conditioning.layers):
        for part in ("element", "energy", "force", "out"):
            grads = [p.grad for p in getattr(layer, part).parameters()]
            assert all(g is not None for g in grads) and any(g.abs().max() > 0 for g in grads), (t, part)
    backbone.zero_grad()
    module.zero_grad()


@pytest.mark.parametrize("pair_reduction", ["global_mean", "per_atom_mean"])
def test_batched_masks_equal_sequential_single_mask_passes(backbone, module, pair_reduction):
    b = _batch()
    idx = module.masked_batch(b, torch.Generator().manual_seed(3)).masked_atom.reshape(3, -1)
    module.config.pair_reduction = pair_reduction
    try:
        module.config.mask_loss_reduction = "sum"
        batched_sum = module(backbone, b, mask_indices=idx)["loss"]
        module.config.mask_loss_reduction = "mean"
        batched_mean = module(backbone, b, mask_indices=idx)["loss"]
        singles = [module(backbone, b, mask_indices=idx[j : j + 1])["loss"] for j in range(3)]
    finally:
        module.config.pair_reduction = "global_mean"
        module.config.mask_loss_reduction = "sum"
    assert len(set(s.item() for s in singles)) == 3  # three different masks
    assert torch.allclose(batched_sum, sum(singles), rtol=1e-10, atol=0)
    assert torch.allclose(batched_mean, sum(singles) / 3, rtol=1e-10, atol=0)


def test_clean_pass_is_bit_identical_around_an_empp_pass(backbone, module):
    b = _batch()
    args = (b.positions, b.atomic_numbers, b.edge_index, b.shifts)
    with torch.no_grad():
        e0, h0 = backbone(*args)
        out = module(backbone, b, torch.Generator().manual_seed(0))
        e1, h1 = backbone(*args)
    assert torch.isfinite(out["loss"])
    assert torch.equal(e0, e1) and torch.equal(h0, h1)
    assert all(len(i.linear_up._forward_pre_hooks) == 0 for i in backbone.mace.interactions)


def test_conditioning_reaches_the_masked_pass_and_follows_the_label_switches(backbone, module):
    b = _batch()
    idx = torch.tensor([[0, 6, 11]])
    with torch.no_grad():
        with_labels = module(backbone, b, mask_indices=idx, use_labels=True)["loss"]
        element_only = module(backbone, b, mask_indices=idx, use_labels=False)["loss"]
    assert not torch.isclose(with_labels, element_only)

    mb = module.masked_batch(b, mask_indices=idx)
    base = module.conditioning_vectors(b, mb, use_labels=True)
    atoms0 = b.batch == 0

    # energy-only data: where has_forces is False the force is ignored, whatever its value
    no_force = b.clone()
    no_force.has_forces = torch.tensor([False, True, True])
    other = no_force.clone()
    other.forces = b.forces.clone()
    other.forces[atoms0] = float("nan")
    c1 = module.conditioning_vectors(no_force, mb, use_labels=True)
    c2 = module.conditioning_vectors(other, mb, use_labels=True)
    for t in range(len(base)):
        assert torch.equal(c1[t], c2[t])
        assert torch.equal(c1[t][1:], base[t][1:])  # other graphs keep their force code
    assert not torch.allclose(c1[1][0], base[1][0])  # the force term was really dropped

    # missing energy (NaN, has_energy False): the energy term is dropped for that graph only
    no_energy = b.clone()
    no_energy.has_energy = torch.tensor([True, True, False])
    no_energy.energy = b.energy.clone()
    no_energy.energy[2] = float("nan")
    c3 = module.conditioning_vectors(no_energy, mb, use_labels=True)
    for t in range(len(base)):
        assert torch.isfinite(c3[t]).all()
        assert torch.equal(c3[t][:2], base[t][:2])
    assert not torch.allclose(c3[0][2], base[0][2])

    # a different energy (inside the Gaussian range) changes the code
    shifted = b.clone()
    shifted.energy = b.energy + 0.5 * torch.bincount(b.batch).double()  # +0.5 eV/atom = +1 std
    c4 = module.conditioning_vectors(shifted, mb, use_labels=True)
    assert all(not torch.allclose(c4[0][g], base[0][g]) for g in range(3))

    # use_labels=False: element only, independent of any label
    plain = module.conditioning_vectors(b, mb, use_labels=False)
    plain2 = module.conditioning_vectors(shifted, mb, use_labels=False)
    assert all(torch.equal(x, y) for x, y in zip(plain, plain2))
    assert not torch.allclose(plain[0], base[0])


def test_energy_label_is_the_standardised_per_atom_interaction_energy(backbone, module):
    b = _batch((3, 2))
    b.energy[1] = b.energy[1] + 100.0  # far above the range: clamped to +3
    y = module.standardised_energy(b)
    assert y[1].item() == 3.0
    for g in range(2):
        z = b.atomic_numbers[b.batch == g].tolist()
        e = (b.energy[g].item() - sum(E0[a] for a in z)) / len(z)
        expected = min(3.0, max(-3.0, (e + 2.0) / 0.5))
        assert math.isclose(y[g].item(), expected, rel_tol=1e-12, abs_tol=1e-12)


def test_single_atom_molecules_are_skipped(backbone, module):
    b = _batch((1, 4, 2))
    out = module(backbone, b, torch.Generator().manual_seed(0))
    # 3 masks: 4-atom molecule gives 3 copies x 3 pairs, 2-atom molecule 2 copies x 1 pair
    assert out["num_pairs"].item() == 3 * 3 + 2 * 1
    assert torch.isfinite(out["loss"])
    out = module(backbone, _batch((1, 1)), torch.Generator().manual_seed(0))
    assert out["num_pairs"].item() == 0 and out["loss"].item() == 0.0


def test_missing_label_statistics_and_bad_config_are_clear_errors(backbone):
    with pytest.raises(ValueError, match="force_scale"):
        EMPPModule(EMPPConfig(), backbone, dict(energy_per_atom_mean=0.0, energy_per_atom_std=1.0))
    EMPPModule(EMPPConfig(use_energy_label=False, use_force_label=False), backbone, {})  # element only
    with pytest.raises(ValueError, match="head_lmax"):
        EMPPModule(EMPPConfig(head_lmax=3), backbone, STATS)  # features only carry l <= 2
    for bad, field in [(dict(num_masks=0), "num_masks"), (dict(pair_reduction="per_pair"), "pair_reduction"),
                       (dict(mask_loss_reduction="max"), "mask_loss_reduction"),
                       (dict(radius_label_mode="x"), "radius_label_mode"), (dict(tau=0.0), "tau")]:
        with pytest.raises(ValueError, match=field):
            EMPPConfig(**bad).validate()
    with pytest.raises(ValueError, match="unknown"):
        EMPPConfig.from_dict({"num_mask": 2})
    assert EMPPConfig.from_dict(EMPPConfig().to_dict()) == EMPPConfig()
