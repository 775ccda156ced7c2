"""EMPP target distributions and KL reductions (spec §5, §12 numbers)."""

import math

import pytest
import torch

from empp_ff.auxiliary.harmonics import real_sh
from empp_ff.empp.loss import kl_per_pair, per_copy_loss, reduce_copies
from empp_ff.empp.sphere import sphere_grid_matrix, sphere_grid_points
from empp_ff.empp.targets import direction_target, radius_bin_centres, radius_target

RES = [100, 101]


@pytest.fixture(scope="module")
def grid3():
    return sphere_grid_matrix(3, RES), sphere_grid_points(RES)


def _random_units(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=g, dtype=torch.float64), dim=-1)


def _legendre(lmax, c):
    p = [torch.ones_like(c), c]
    for l in range(1, lmax):
        p.append(((2 * l + 1) * c * p[l] - l * p[l - 1]) / (l + 1))
    return p[: lmax + 1]


def test_grid_sh_sum_equals_legendre_closed_form(grid3):
    Y, xyz = grid3
    u = _random_units(7, 0)
    lhs = real_sh(3, u, normalize=True) @ Y
    c = u @ xyz.t()
    rhs = sum((2 * l + 1) / (4 * math.pi) * p for l, p in enumerate(_legendre(3, c)))
    assert (lhs - rhs).abs().max() < 1e-12


@pytest.mark.parametrize("lmax,expected", [(2, 2.13), (3, 3.55)])
def test_direction_target_is_normalised_peaked_at_u_with_spec_information(grid3, lmax, expected):
    Y = grid3[0][: (lmax + 1) ** 2]
    xyz = grid3[1]
    u = _random_units(300, 1)
    r = u * (1.0 + 3.0 * torch.rand(300, 1, dtype=torch.float64))  # the target depends on direction only
    q = direction_target(r, Y, tau_label=0.1)
    assert q.shape == (300, RES[0] * RES[1])
    assert torch.allclose(q.sum(-1), torch.ones(300, dtype=torch.float64), atol=1e-12)
    assert (q >= 0).all()
    # argmax within ~2° of u (grid spacing ~1.8° in beta, 3.6° in alpha at the equator)
    angle = torch.rad2deg(torch.arccos((xyz[q.argmax(-1)] * u).sum(-1).clamp(-1, 1)))
    assert angle.max() < 2.6, angle.max()
    assert angle.mean() < 1.5
    S = q.shape[1]
    kl_uniform = (q * (q.clamp_min(1e-300).log() + math.log(S))).sum(-1)
    assert abs(kl_uniform.mean().item() - expected) < 0.08, kl_uniform.mean()


def test_direction_target_is_a_function_of_the_angle_to_u_only(grid3):
    # rotating u by a rotation that maps grid points to grid points (alpha shift by one
    # grid step about e3nn's y axis) permutes the target exactly
    Y = sphere_grid_matrix(2, [20, 24])
    u = _random_units(3, 4)
    a = 2 * math.pi / 24
    # find the rotation about y that maps alpha -> alpha + a, as e3nn defines alpha
    from empp_ff.model._imports import import_e3nn_o3

    o3 = import_e3nn_o3()
    R = o3.matrix_y(torch.tensor(a, dtype=torch.float64))
    q = direction_target(u, Y, 0.1).reshape(3, 20, 24)
    q_rot = direction_target(u @ R.t(), Y, 0.1).reshape(3, 20, 24)
    # one of the two alpha shifts (the sign convention) reproduces the rotated target
    err = min((torch.roll(q, s, dims=-1) - q_rot).abs().max().item() for s in (1, -1))
    assert err < 1e-12


@pytest.mark.parametrize(
    "mode,rng,expected,tol",
    [("paper", [0.9, 5.0], 0.85, 0.04), ("paper", [0.0, 6.0], 1.08, 0.04), ("reference", [0.0, 6.0], 0.071, 0.004)],
)
def test_radius_target_information_matches_spec(mode, rng, expected, tol):
    c = radius_bin_centres(rng, 128)
    d = 1.0 + 4.0 * torch.rand(4000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    q = radius_target(d, c, 0.5, mode)
    assert torch.allclose(q.sum(-1), torch.ones_like(d), atol=1e-12)
    kl_uniform = (q * (q.log() + math.log(128))).sum(-1).mean().item()
    assert abs(kl_uniform - expected) < tol, kl_uniform
    # the mode sits at the bin nearest to d
    assert ((c[q.argmax(-1)] - d).abs() <= (c[1] - c[0]) / 2 + 1e-9).all()


def test_paper_radius_target_is_a_normalised_gaussian_and_safe_far_outside_the_bins():
    c = radius_bin_centres([0.9, 5.0], 128)
    d = torch.tensor([2.0], dtype=torch.float64)
    q = radius_target(d, c, 0.5, "paper")[0]
    w = torch.exp(-((c - 2.0) ** 2) / (2 * 0.25))
    assert torch.allclose(q, w / w.sum(), atol=1e-14)
    far = radius_target(torch.tensor([40.0, 0.01], dtype=torch.float64), c, 0.5, "paper")
    assert torch.isfinite(far).all() and torch.allclose(far.sum(-1), torch.ones(2, dtype=torch.float64))
    assert far[0].argmax() == 127 and far[1].argmax() == 0


def test_kl_is_zero_for_the_target_itself_and_positive_otherwise():
    q = torch.softmax(torch.randn(5, 50, dtype=torch.float64), -1)
    assert kl_per_pair(q.log(), q).abs().max() < 1e-12
    p = torch.softmax(torch.randn(5, 50, dtype=torch.float64), -1)
    kl = kl_per_pair(p.log(), q)
    assert torch.allclose(kl, (q * (q.log() - p.log())).sum(-1)) and (kl > 0).all()
    # low-precision inputs are evaluated in float32
    assert kl_per_pair(p.log().half(), q.half()).dtype == torch.float32


def test_pair_and_mask_reductions():
    # B = 2 molecules, n = 2 copies; graph id = j*B + b
    loss = torch.tensor([1.0, 3.0, 5.0, 2.0, 4.0])
    g_idx = torch.tensor([0, 0, 1, 2, 3])  # copy 0: atom 0 has pairs {1,3}, atom 1 {5}; copy 1: {2}, {4}
    glob, has = per_copy_loss(loss, g_idx, 2, 2, "global_mean")
    assert torch.allclose(glob, torch.tensor([3.0, 3.0])) and has.all()
    atom, _ = per_copy_loss(loss, g_idx, 2, 2, "per_atom_mean")
    assert torch.allclose(atom, torch.tensor([(2.0 + 5.0) / 2, 3.0]))
    assert reduce_copies(glob, has, "sum").item() == 6.0
    assert reduce_copies(glob, has, "mean").item() == 3.0
    # a copy without pairs is left out of the mean
    glob2, has2 = per_copy_loss(loss[:3], g_idx[:3], 2, 2, "global_mean")
    assert has2.tolist() == [True, False]
    assert reduce_copies(glob2, has2, "mean").item() == 3.0
