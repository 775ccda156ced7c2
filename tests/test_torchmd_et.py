"""The torchmd_et backbone (torchmd-net's Equivariant Transformer; the ``et`` extra):
symmetry, forces = −∇E, smooth cutoff, EMPP conditioning, model file, halo protocol.

Skipped where torchmd-net is not installed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("torchmdnet")

from empp_ff.empp.config import EMPPConfig  # noqa: E402
from empp_ff.empp.module import EMPPModule  # noqa: E402
from empp_ff.model.backbone import build_backbone  # noqa: E402
from empp_ff.model.potential import Potential  # noqa: E402
from empp_ff.model.torchmd_et import TorchMDETBackbone  # noqa: E402
from empp_ff.neighbours import neighbour_graph  # noqa: E402
from empp_ff.testing.batches import collate, molecule_graph, random_molecule  # noqa: E402
from empp_ff.testing.models import demo_spec  # noqa: E402
from empp_ff.testing.structures import separated_cluster  # noqa: E402

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


def _molecule(seed=0, n=9):
    return separated_cluster(seed, n)


def _run(pot, pos, z, **kw):
    ei, sh = neighbour_graph(pos, R_MAX)
    n = len(z)
    return pot(torch.tensor(pos), torch.tensor(z), torch.tensor(ei), torch.tensor(sh), torch.zeros(n, dtype=torch.long),
               1, **kw)


def _rotation(seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def test_is_the_named_backbone_with_one_more_step_than_layers(pot):
    backbone = pot.backbone
    assert isinstance(backbone, TorchMDETBackbone) and backbone.spec.backbone == "torchmd_et"
    assert backbone.num_interactions == 3 and pot.num_interactions == 3  # neighbour embedding + 2 layers
    assert str(backbone.feature_irreps()) == "8x0e+8x1o" and len(backbone.message_irreps()) == 2


def test_rotation_translation_permutation(pot):
    from empp_ff.model._imports import import_e3nn_o3

    pos, z = _molecule()
    q = _rotation(1)
    ref = _run(pot, pos, z)
    moved = _run(pot, pos @ q.T + np.array([0.3, -1.0, 2.0]), z)
    assert torch.allclose(ref["energy"], moved["energy"], rtol=0, atol=1e-12)
    assert torch.allclose(moved["forces"], ref["forces"] @ torch.tensor(q).T, atol=1e-12)
    d = import_e3nn_o3().Irreps("8x0e+8x1o").D_from_matrix(torch.tensor(q))
    assert torch.allclose(moved["node_feats"], ref["node_feats"] @ d.T, atol=1e-11)
    perm = np.random.default_rng(2).permutation(len(z))
    permuted = _run(pot, pos[perm], z[perm])
    assert torch.allclose(permuted["node_energy"], ref["node_energy"][perm], atol=1e-13)


def test_forces_are_minus_the_energy_gradient(pot):
    pos, z = _molecule(3)
    forces = _run(pot, pos, z)["forces"].numpy()
    h = 1e-5
    for i, k in [(0, 0), (4, 1), (7, 2)]:
        plus, minus = pos.copy(), pos.copy()
        plus[i, k] += h
        minus[i, k] -= h
        fd = -(float(_run(pot, plus, z, compute_forces=False)["energy"].detach())
               - float(_run(pot, minus, z, compute_forces=False)["energy"].detach())) / (2 * h)
        assert abs(forces[i, k] - fd) < 1e-7 * max(1.0, abs(fd))


def test_energy_is_smooth_at_the_cutoff(pot):
    z = np.array([6, 1, 8])
    energies = [float(_run(pot, np.array([[0.0, 0, 0], [0, 0, 1.1], [0, 0, R_MAX + s]]), z,
                           compute_forces=False)["energy"]) for s in (-1e-6, 1e-6)]
    assert abs(energies[0] - energies[1]) < 1e-7


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


def test_model_file_equals_the_potential_and_the_halo_protocol_equals_forward(pot, tmp_path):
    from empp_ff.export import export_potential, load_model_file, read_metadata
    from empp_ff.testing.halo import evaluate
    from empp_ff.testing.structures import molecular_box

    path = export_potential(pot, tmp_path / "et.pt")
    meta = read_metadata(path)
    assert meta["backbone"] == "torchmd_et" and meta["num_interactions"] == 3
    assert meta["ghost_cutoff"] == pytest.approx(3 * R_MAX) and meta["halo"]["comm_dims"] == [8, 32]
    assert meta["versions"]["torchmd-net"]
    from click.testing import CliRunner

    from empp_ff.cli import main

    info = CliRunner().invoke(main, ["info", str(path)])
    assert info.exit_code == 0 and "torchmd_et (torchmd-net Equivariant Transformer) 8ch, 2 attention" in info.output
    model = load_model_file(path)[0]
    atoms = molecular_box(24, 11.0, seed=1)
    pos = atoms.get_positions()
    ei, sh = neighbour_graph(pos, R_MAX, atoms.cell.array, atoms.pbc)
    inputs = (torch.tensor(pos), torch.tensor(atoms.numbers), torch.tensor(ei), torch.tensor(sh))
    out = model(*inputs, len(atoms), True)
    ref = pot(*inputs, torch.zeros(len(atoms), dtype=torch.long), 1, compute_virial=True)
    assert abs(float(out["energy"]) - float(ref["energy"][0])) < 1e-8
    assert torch.allclose(out["forces"], ref["forces"], rtol=0, atol=1e-8)
    assert torch.allclose(out["virial"], ref["virial"][0], rtol=0, atol=1e-8)
    res = evaluate(model, atoms, (2, 1, 1))
    assert abs(res["energy"] - float(out["energy"])) < 1e-8
    assert np.abs(res["forces"] - out["forces"].detach().numpy()).max() < 1e-8


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
