"""Physics of the backbone + Potential: symmetry, forces = −∇E, batching, hooks."""

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, Data

from empp_ff.model.backbone import build_backbone
from empp_ff.model.potential import Potential
from empp_ff.model.spec import BackboneSpec
from empp_ff.neighbours import neighbour_graph
from empp_ff.testing.structures import separated_cluster

from conftest import TINY_MODEL

R_MAX = 4.0


def _molecule(seed=0, n=9):
    return separated_cluster(seed, n)


def _potential(seed=0, dtype="float64"):
    torch.manual_seed(seed)
    spec = BackboneSpec(atomic_numbers=[1, 6, 8], atomic_energies=[-13.6, -1029.0, -2041.0],
                        r_max=R_MAX, avg_num_neighbors=6.0, scale=0.7, shift=0.1, dtype=dtype,
                        **{k: v for k, v in TINY_MODEL.items()})
    pot = Potential(build_backbone(spec))
    # Random readout/scale weights are small at init; perturb all parameters so
    # the symmetry tests are not passed by a near-constant function.
    with torch.no_grad():
        for p in pot.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return pot


def _graph(pos, z, dtype=torch.float64):
    ei, shifts = neighbour_graph(pos, R_MAX)
    return Data(positions=torch.tensor(pos, dtype=dtype), atomic_numbers=torch.tensor(z),
                edge_index=torch.tensor(ei), shifts=torch.tensor(shifts, dtype=dtype), num_nodes=len(z))


def _run(pot, data, **kw):
    batch = Batch.from_data_list(data if isinstance(data, list) else [data])
    return pot(batch.positions, batch.atomic_numbers, batch.edge_index, batch.shifts, batch.batch,
               int(batch.num_graphs), **kw)


def _random_rotation(seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


@pytest.mark.slow
def test_energy_invariant_forces_equivariant_under_rotation_and_inversion():
    pot = _potential()
    pos, z = _molecule()
    out = _run(pot, _graph(pos, z))
    for R in (_random_rotation(1), _random_rotation(2), -np.eye(3)):
        rotated = _run(pot, _graph(pos @ R.T, z))
        assert torch.allclose(rotated["energy"], out["energy"], rtol=0, atol=1e-10)
        assert torch.allclose(rotated["forces"], out["forces"] @ torch.tensor(R.T), rtol=0, atol=1e-10)
    # and the forces are not trivially zero
    assert out["forces"].abs().max() > 1e-3


def test_forces_are_minus_gradient_by_finite_differences():
    pot = _potential()
    pos, z = _molecule(seed=3)
    forces = _run(pot, _graph(pos, z))["forces"].detach().numpy()
    h = 1e-5
    for atom, axis in [(0, 0), (3, 1), (5, 2), (8, 0)]:
        plus, minus = pos.copy(), pos.copy()
        plus[atom, axis] += h
        minus[atom, axis] -= h
        e_plus = _run(pot, _graph(plus, z), compute_forces=False)["energy"].item()
        e_minus = _run(pot, _graph(minus, z), compute_forces=False)["energy"].item()
        fd = -(e_plus - e_minus) / (2 * h)
        assert fd == pytest.approx(forces[atom, axis], abs=1e-7, rel=1e-6)


def test_virial_of_molecule_is_sum_r_outer_f():
    pot = _potential()
    pos, z = _molecule(seed=4)
    out = _run(pot, _graph(pos, z), compute_virial=True)
    expected = torch.einsum("ni,nj->ij", torch.tensor(pos), out["forces"])
    assert torch.allclose(out["virial"][0], expected, atol=1e-10)


def test_prediction_does_not_depend_on_batch_mates():
    pot = _potential()
    mols = [_molecule(seed=s, n=n) for s, n in [(5, 7), (6, 9), (7, 5)]]
    alone = [_run(pot, _graph(p, z)) for p, z in mols]
    together = _run(pot, [_graph(p, z) for p, z in mols])
    assert torch.allclose(together["energy"], torch.cat([a["energy"] for a in alone]), atol=1e-10)
    assert torch.allclose(together["forces"], torch.cat([a["forces"] for a in alone]), atol=1e-10)


def test_translation_and_permutation_invariance():
    pot = _potential()
    pos, z = _molecule(seed=8)
    out = _run(pot, _graph(pos, z))
    moved = _run(pot, _graph(pos + np.array([3.0, -1.0, 7.5]), z))
    assert torch.allclose(moved["energy"], out["energy"], atol=1e-10)
    perm = np.random.default_rng(0).permutation(len(z))
    permuted = _run(pot, _graph(pos[perm], z[perm]))
    assert torch.allclose(permuted["energy"], out["energy"], atol=1e-10)
    assert torch.allclose(permuted["forces"], out["forces"][perm], atol=1e-10)


def test_conditioning_hook_is_bit_identical_when_off_and_acts_when_on():
    pot = _potential(dtype="float32")
    backbone = pot.backbone
    pos, z = _molecule(seed=9)
    data = _graph(pos, z, dtype=torch.float32)
    batch = Batch.from_data_list([data])
    args = (batch.positions, batch.atomic_numbers, batch.edge_index, batch.shifts)
    e_before, feats_before = backbone(*args)
    dims = [irreps.dim for irreps in backbone.message_irreps()]
    vectors = [torch.randn(1, d) for d in dims]
    with backbone.conditioning(vectors, batch.batch):
        e_on, feats_on = backbone(*args)
    e_after, feats_after = backbone(*args)
    assert torch.equal(e_before, e_after) and torch.equal(feats_before, feats_after)
    assert not torch.allclose(e_on, e_before)
    # None on every layer: the hooks are not even installed, outputs unchanged.
    with backbone.conditioning([None] * len(dims), batch.batch):
        e_none, _ = backbone(*args)
    assert torch.equal(e_none, e_before)
    with pytest.raises(ValueError, match="one entry per interaction"):
        with backbone.conditioning(vectors[:1], batch.batch):
            pass


def test_last_layer_features_are_equivariant_not_scalar_only():
    pot = _potential()
    irreps = pot.backbone.feature_irreps()
    assert any(ir.l == 1 and ir.p == -1 for _, ir in irreps), f"no 1o features: {irreps}"
