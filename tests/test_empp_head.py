"""EMPP position head: equivariance of the coefficients, norm, grid evaluation."""

import pytest
import torch

from empp_ff.auxiliary.norm import IrrepsRMSNorm
from empp_ff.empp.config import EMPPConfig
from empp_ff.empp.direction import DirectionHead
from empp_ff.empp.head import PositionHead
from empp_ff.empp.module import EMPPModule
from empp_ff.model._imports import import_e3nn_o3
from empp_ff.model.backbone import MACEBackbone
from empp_ff.model.spec import BackboneSpec
from empp_ff.testing.batches import collate, molecule_graph, random_molecule

o3 = import_e3nn_o3()
SPECIES = [1, 6, 8]
STATS = dict(energy_per_atom_mean=-2.0, energy_per_atom_std=0.5, force_scale=1.5)


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    spec = BackboneSpec(
        atomic_numbers=SPECIES, atomic_energies=[-13.0, -1000.0, -2000.0], num_channels=8, max_L=2,
        num_interactions=2, correlation=2, radial_mlp=[8], avg_num_neighbors=4.0, dtype="float64",
    )
    return MACEBackbone(spec)


def _random_rotation(seed, reflect=False):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    if torch.det(q) < 0:
        q = -q
    return -q if reflect else q


def _molecules(R=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    graphs = []
    for n in (5, 4):
        p, z = random_molecule(n, SPECIES, g)
        f = torch.randn(n, 3, generator=g, dtype=torch.float64)
        if R is not None:
            p, f = p @ R.t(), f @ R.t()
        graphs.append(molecule_graph(p, z, 5.0, energy=-1000.0 - n, forces=f))
    return collate(graphs)


def _coefficients(module, backbone, batch, idx):
    mb = module.masked_batch(batch, mask_indices=idx)
    per_layer = module.conditioning_vectors(batch, mb, use_labels=True)
    with backbone.conditioning(per_layer, mb.batch):
        _, feats = backbone(mb.positions, mb.atomic_numbers, mb.edge_index, mb.shifts)
    return module.head(feats[mb.k_idx])


@pytest.mark.parametrize("reflect", [False, True])
def test_head_coefficients_transform_with_wigner_d(backbone, reflect):
    module = EMPPModule(EMPPConfig(enabled=True, num_masks=2, head_channels=6, grid_res=[10, 11]), backbone, STATS)
    R = _random_rotation(11, reflect)
    idx = torch.tensor([[0, 6], [3, 5]])
    A = _coefficients(module, backbone, _molecules(), idx)
    A_rot = _coefficients(module, backbone, _molecules(R), idx)
    assert A.shape == (2 * (4 + 3), 6, 9)  # P = 2 copies x (N_b − 1) pairs (all within 5 Å)
    D = o3.Irreps("0e+1o+2e").D_from_matrix(R)  # O(3) parity: l odd flips under inversion
    expected = torch.einsum("ij,pcj->pci", D, A)
    assert (A_rot - expected).abs().max() < 1e-9
    # every degree carries signal (a parity mismatch would make l = 1 silently zero)
    for l in range(3):
        assert A[:, :, l * l : (l + 1) ** 2].abs().max() > 1e-3


def test_rms_norm_is_equivariant_and_normalises_each_irrep_type():
    irreps = o3.Irreps("4x0e+3x1o+2x2e")
    norm = IrrepsRMSNorm(irreps).double()
    x = torch.randn(10, irreps.dim, dtype=torch.float64) * 5 + 1
    R = _random_rotation(3)
    D = irreps.D_from_matrix(R)
    assert torch.allclose(norm(x @ D.t()), norm(x) @ D.t(), atol=1e-12)
    y = norm(x)
    s, v, t = y[:, :4], y[:, 4:13], y[:, 13:]
    assert torch.allclose(s.mean(-1), torch.zeros(10, dtype=torch.float64), atol=1e-12)
    for block in (s, v, t):
        assert torch.allclose(block.pow(2).mean(-1), torch.ones(10, dtype=torch.float64), atol=1e-3)


def test_head_rejects_features_without_the_needed_parity():
    with pytest.raises(ValueError, match="1o"):
        PositionHead("8x0e+8x1e", channels=4, lmax=1)  # Equiformer-style 1e: no path from MACE-like labels


def test_direction_head_in_coefficient_space_equals_grid_evaluation():
    torch.manual_seed(0)
    lmax, res, C, H = 2, [12, 15], 5, 4
    head = DirectionHead(lmax, res, C, H, tau=0.1, dtype=torch.float64)
    A = torch.randn(3, C, (lmax + 1) ** 2, dtype=torch.float64)
    grid = o3.ToS2Grid(lmax=lmax, res=tuple(res), normalization="integral", dtype=torch.float64)
    F = grid(A).reshape(3, C, -1).transpose(1, 2)  # [P, S, C]: each channel evaluated on the grid
    naive = head.linear2(torch.nn.functional.silu(head.linear1(F)))[..., 0]
    assert torch.allclose(head.logits(A), naive, atol=1e-12)
    log_p = head(A)
    assert torch.allclose(log_p.exp().sum(-1), torch.ones(3, dtype=torch.float64))
    assert torch.allclose(log_p, torch.log_softmax(naive / 0.1, -1), atol=1e-10)
    # a single pair keeps its pair dimension (the reference's bare squeeze() lost it)
    assert head(A[:1]).shape == (1, 12 * 15)


def test_fused_grid_mlp_matches_plain_autograd_in_value_and_gradient(monkeypatch):
    import empp_ff.empp.direction as direction

    monkeypatch.setattr(direction, "_CHUNK_ELEMENTS", 2 * 4 * 30)  # several chunks of 2 pairs
    a = torch.randn(5, 4, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, dtype=torch.float64, requires_grad=True)
    Y = torch.randn(6, 30, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, w: direction._GridMLP.apply(a, Y, w), (a, w))
    torch.manual_seed(1)
    head = DirectionHead(2, [10, 11], 5, 4, tau=0.1, dtype=torch.float64)
    A = torch.randn(7, 5, 9, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(7, 110, dtype=torch.float64)
    grads = []
    for fn in (head.logits, head.logits_reference):
        out = (fn(A) * weights).sum()
        grads.append(torch.autograd.grad(out, [A, *head.parameters()]))
    assert torch.allclose(head.logits(A), head.logits_reference(A), atol=1e-12)
    for g1, g2 in zip(*grads):
        assert torch.allclose(g1, g2, atol=1e-10)
