"""The torchmd_et backbone (torchmd-net's Equivariant Transformer; the ``et`` extra): its own
shape (one more message-passing step than attention layers), EMPP's masked passes through it,
its named parts. The physics, the model file and the halo protocol: the backbone contract
(``tests/test_backbone_contract.py``).

Skipped where torchmd-net is not installed."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("torchmdnet")

from empp_ff.empp.config import EMPPConfig  # noqa: E402
from empp_ff.empp.module import EMPPModule  # noqa: E402
from empp_ff.export.wrappers import halo_comm_dims  # noqa: E402
from empp_ff.model.backbone import build_backbone  # noqa: E402
from empp_ff.model.potential import Potential  # noqa: E402
from empp_ff.model.torchmd_et import TorchMDETBackbone  # noqa: E402
from empp_ff.testing.batches import collate, molecule_graph, random_molecule  # noqa: E402
from empp_ff.testing.models import demo_spec  # noqa: E402

R_MAX = 3.5
STATS = dict(energy_per_atom_mean=-2.0, energy_per_atom_std=0.5, force_scale=1.5)


def _potential(seed=0, dtype="float64", num_interactions=2):
    spec = demo_spec(backbone="torchmd_et", num_channels=8, num_heads=2, num_rbf=8, r_max=R_MAX, dtype=dtype,
                     num_interactions=num_interactions, scale=0.7, shift=0.1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pot = Potential(build_backbone(spec))
        with torch.no_grad():  # far from the nearly flat initialisation
            for p in pot.parameters():
                p.add_(0.2 * torch.randn_like(p))
    return pot.eval()


@pytest.fixture(scope="module")
def pot():
    return _potential()


def test_is_the_named_backbone_with_one_more_step_than_layers(pot):
    backbone = pot.backbone
    assert isinstance(backbone, TorchMDETBackbone) and backbone.spec.backbone == "torchmd_et"
    assert backbone.num_interactions == 3 and pot.num_interactions == 3  # neighbour embedding + 2 layers
    assert str(backbone.feature_irreps()) == "8x0e+8x1o" and len(backbone.message_irreps()) == 2
    # a halo exchange carries x (8 numbers) before the first attention layer, x and v (32) before the next
    assert halo_comm_dims(pot) == [8, 32]


def _batch(sizes=(6, 5, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    graphs = []
    for n in sizes:
        p, z = random_molecule(n, [1, 6, 8], g)
        f = torch.randn(n, 3, generator=g, dtype=torch.float64)
        graphs.append(molecule_graph(p, z, R_MAX, energy=-100.0 * n, forces=f))
    return collate(graphs)


def test_empp_masks_in_one_pass_equal_single_passes_and_leave_nothing_behind(pot):
    backbone = pot.backbone
    torch.manual_seed(1)
    config = EMPPConfig(enabled=True, num_masks=3, mask_loss_reduction="sum", grid_res=[30, 31])
    module = EMPPModule(config, backbone, STATS)
    b = _batch()
    args = (b.positions, b.atomic_numbers, b.edge_index, b.shifts)
    with torch.no_grad():
        clean = backbone(*args)
    idx = module.masked_batch(b, torch.Generator().manual_seed(3)).masked_atom.reshape(3, -1)
    batched = module(backbone, b, mask_indices=idx)["loss"]
    singles = [module(backbone, b, mask_indices=idx[j:j + 1])["loss"] for j in range(3)]
    assert len({s.item() for s in singles}) == 3
    assert torch.allclose(batched, sum(singles), rtol=1e-10, atol=0)
    element_only = module(backbone, b, mask_indices=idx, use_labels=False)["loss"]
    assert not torch.allclose(batched, element_only)  # the labels reach the masked pass
    with torch.no_grad():
        after = backbone(*args)
    assert torch.equal(clean[0], after[0]) and torch.equal(clean[1], after[1])
    assert all(len(layer._forward_pre_hooks) == 0 for layer in backbone.layers)


def test_pretrained_reinit_elements_keeps_the_fresh_embedding_tables():
    """``empp.pretrained_reinit: [elements]`` on the ET: the two element tables keep their
    fresh values, every other weight is the pre-trained one."""
    from empp_ff.model.transfer import transfer_weights

    source, target = _potential(seed=1), _potential(seed=2)
    before = {n: p.detach().clone() for n, p in target.named_parameters()}
    patterns = EMPPConfig(pretrained_reinit=["elements"]).reinit_patterns("torchmd_et")
    report = transfer_weights(source, target, (1, 6, 8), (1, 6, 8), keep=patterns)
    assert set(report.kept) == {"backbone.embedding.weight", "backbone.neighbour_embedding.embedding.weight"}
    src = dict(source.named_parameters())
    for name, param in target.named_parameters():
        expected = before[name] if name in report.kept else src[name]
        assert torch.equal(param, expected), name
