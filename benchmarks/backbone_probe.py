"""Feasibility probe for a second, attention-based backbone (docs/backbone_choice.md).

Not part of the package or the tests: it needs the candidates installed in a venv of
its own (they are not dependencies of empp-ff)::

    python3 -m venv ../probe-venv && . ../probe-venv/bin/activate   # outside the tree: ruff lints it
    pip install torch==2.13.0 && pip install -e . && pip install torchmd-net equiformer-pytorch
    OMP_NUM_THREADS=1 python benchmarks/backbone_probe.py [et|equiformer_pytorch|speed|all]

``et``: torchmd-net's Equivariant Transformer layers driven on empp-ff's edge list
(sender edge_index[0], receiver edge_index[1], vector pos[r] - pos[s] + shift):
rotation/permutation symmetry, forces against finite differences, smoothness at r_max,
TorchScript (script, save, reload, other atom counts), torch.export with dynamic atom and
edge counts, and EMPP-style conditioning (n masked copies in one pass, equivariance).
``equiformer_pytorch``: scripting, tracing with another atom count, the cutoff, speed.
``speed``: MACE (empp-ff's backbone) against ET at demo size, interleaved, float32, 1 thread.
"""

from __future__ import annotations

import contextlib
import io
import sys
import time
import warnings
from pathlib import Path
from typing import Tuple

import numpy as np
import torch

DEMO = Path(__file__).resolve().parents[1] / "empp_ff" / "data" / "demo" / "aspirin_demo.npz"


def aspirin(frames: int = 8, dtype=torch.float64):
    d = np.load(DEMO)
    return torch.as_tensor(d["z"]), torch.as_tensor(d["R"][:frames], dtype=dtype)


def graph(pos: torch.Tensor, r_max: float = 5.0):
    """All pairs within r_max (a molecule: no shifts), empp-ff's convention."""
    dist = torch.cdist(pos, pos)
    s, r = torch.nonzero((dist < r_max) & (dist > 0), as_tuple=True)
    return torch.stack([s, r]), torch.zeros(s.shape[0], 3, dtype=pos.dtype)


def _import_et():
    with contextlib.redirect_stdout(io.StringIO()):  # warp prints its banner on stdout at import
        from torchmdnet.models.torchmd_et import EquivariantMultiHeadAttention
        from torchmdnet.models.utils import ExpNormalSmearing, NeighborEmbedding, act_class_mapping
    return EquivariantMultiHeadAttention, ExpNormalSmearing, NeighborEmbedding, act_class_mapping


class ETBackbone(torch.nn.Module):
    """Per-atom energy, scalars x [N, C] and vectors v [N, 3, C] from torchmd-net's ET blocks."""

    def __init__(self, channels=32, layers=2, heads=4, rbf=16, r_max=5.0, max_z=10, dtype=torch.float64):
        super().__init__()
        attention, smearing, neighbour_embedding, activations = _import_et()
        self.channels = channels
        self.embedding = torch.nn.Embedding(max_z, channels, dtype=dtype)
        self.rbf = smearing(0.0, r_max, rbf, True, dtype=dtype)
        self.neighbour_embedding = neighbour_embedding(channels, rbf, 0.0, r_max, max_z, dtype)
        # vector_cutoff=True: values (not only attention weights) go to zero at r_max, so E is smooth there
        self.layers = torch.nn.ModuleList(
            attention(channels, rbf, "both", heads, activations["silu"], "silu", 0.0, r_max, True, dtype)
            for _ in range(layers))
        self.out_norm = torch.nn.LayerNorm(channels, dtype=dtype)
        self.readout = torch.nn.Sequential(torch.nn.Linear(channels, channels // 2, dtype=dtype), torch.nn.SiLU(),
                                           torch.nn.Linear(channels // 2, 1, dtype=dtype))

    def forward(self, pos, z, edge_index, shifts) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = pos.shape[0]
        vec = pos.index_select(0, edge_index[1]) - pos.index_select(0, edge_index[0]) + shifts
        length = torch.linalg.norm(vec, dim=-1)
        loops = torch.arange(n, device=pos.device)
        # self loops, as torchmd-net's own neighbour list adds them (zero vector, distance 0)
        ei = torch.cat([edge_index, torch.stack([loops, loops])], dim=1)
        r = torch.cat([length, torch.zeros(n, dtype=pos.dtype, device=pos.device)])
        d = torch.cat([vec / length[:, None], torch.zeros(n, 3, dtype=pos.dtype, device=pos.device)])
        f = self.rbf(r)
        x = self.embedding(z)
        # NeighborEmbedding.forward branches on data (self-loop removal), which torch.export cannot
        # trace: compose its parts, aggregating into receivers
        ne = self.neighbour_embedding
        w = ne.distance_proj(f[: edge_index.shape[1]]) * ne.cutoff(length)[:, None]
        msg = w * ne.embedding(z).index_select(0, edge_index[0])
        x = ne.combine(torch.cat([x, torch.zeros_like(x).index_add(0, edge_index[1], msg)], dim=1))
        v = torch.zeros(n, 3, self.channels, dtype=pos.dtype, device=pos.device)
        for layer in self.layers:  # q from edge_index[1] (receiver), k and v from edge_index[0] (sender)
            dx, dv = layer(x, v, ei, r, f, d)
            x = x + dx
            v = v + dv
        x = self.out_norm(x)
        return self.readout(x)[:, 0], x, v


class EnergyForces(torch.nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, pos, z, edge_index, shifts) -> Tuple[torch.Tensor, torch.Tensor]:
        pos = pos.detach().requires_grad_(True)
        energy = self.backbone(pos, z, edge_index, shifts)[0].sum()
        grad = torch.autograd.grad([energy], [pos])[0]
        assert grad is not None
        return energy, -grad


def eager(model, pos, z):
    ei, sh = graph(pos.detach())
    p = pos.detach().clone().requires_grad_(True)
    e = model(p, z, ei, sh)[0].sum()
    return e, -torch.autograd.grad(e, p)[0]


@contextlib.contextmanager
def conditioning(model: ETBackbone, per_layer, batch):
    """EMPP's injection on ET: add c[batch] to each attention layer's input (x, v) only; the
    residual x = x + dx keeps the unconditioned x (EMPP's reference code does the same on
    Equiformer). ``per_layer[t]``: [G, C + 3C] in e3nn's layout of ``C x 0e + C x 1o``."""
    c_ = model.channels
    handles = []
    for layer, c in zip(model.layers, per_layer):
        s = c[:, :c_][batch]
        v = c[:, c_:].reshape(-1, c_, 3)[batch].transpose(1, 2)  # e3nn 0.4.4 orders a 1o as (x, y, z)

        def add(_module, args, s=s, v=v):
            return (args[0] + s, args[1] + v) + tuple(args[2:])

        handles.append(layer.register_forward_pre_hook(add))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _batched(graphs):
    pos = torch.cat([g[0] for g in graphs])
    zs = torch.cat([g[1] for g in graphs])
    eis, batch, offset = [], [], 0
    for k, (p, _) in enumerate(graphs):
        ei, _ = graph(p)
        eis.append(ei + offset)
        batch.append(torch.full((p.shape[0],), k))
        offset += p.shape[0]
    ei = torch.cat(eis, 1)
    return pos, zs, ei, torch.zeros(ei.shape[1], 3, dtype=pos.dtype), torch.cat(batch)


def et_symmetry_and_forces(m, z, R):
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))
    pos = R[0]
    ei, sh = graph(pos)
    with torch.no_grad():
        e, x, v = m(pos, z, ei, sh)
        e2, x2, v2 = m(pos @ q.T, z, ei, sh)
        perm = torch.randperm(pos.shape[0])
        ep = m(pos[perm], z[perm], torch.argsort(perm)[ei], sh)[0]
    print(f"rotation: |dE_atom| {(e - e2).abs().max():.1e}, |dx| {(x - x2).abs().max():.1e}, "
          f"|v(Qr) - Q v(r)| {(torch.einsum('ij,njc->nic', q, v) - v2).abs().max():.1e}; "
          f"permutation |dE_atom| {(ep - e[perm]).abs().max():.1e}")
    f = eager(m, pos, z)[1]
    h, i, k = 1e-5, 3, 1
    plus, minus = pos.clone(), pos.clone()
    plus[i, k] += h
    minus[i, k] -= h
    with torch.no_grad():
        fd = -(eager_energy(m, plus, z) - eager_energy(m, minus, z)) / (2 * h)
    print(f"force vs central finite difference: {abs(float(f[i, k] - fd)):.1e} (F = {float(f[i, k]):.4f})")
    zz = torch.tensor([6, 1, 8])
    with torch.no_grad():
        es = [float(eager_energy(m, torch.tensor([[0.0, 0, 0], [0, 0, 1.1], [0, 0, r]], dtype=torch.float64), zz))
              for r in (5.0 - 1e-6, 5.0 + 1e-6)]
    print(f"energy change for a pair moved 2e-6 Å across r_max: {abs(es[0] - es[1]):.1e}")


def eager_energy(m, pos, z):
    ei, sh = graph(pos)
    return m(pos, z, ei, sh)[0].sum()


def et_export(m, z, R):
    scripted = torch.jit.script(EnergyForces(m))
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    buf.seek(0)
    scripted = torch.jit.load(buf)
    worst = 0.0
    for n in (21, 12, 5):
        ei, sh = graph(R[1][:n])
        e_s, f_s = scripted(R[1][:n], z[:n], ei, sh)
        e_e, f_e = eager(m, R[1][:n], z[:n])
        worst = max(worst, abs(float((e_s - e_e).detach())), float((f_s - f_e).abs().max()))
    print(f"torch.jit.script + save/load, called with 21, 12, 5 atoms: max |d| vs eager {worst:.1e} (float64)")
    from torch.fx.experimental.proxy_tensor import make_fx

    frozen = EnergyForces(m)
    for p in frozen.parameters():
        p.requires_grad_(False)
    ei, sh = graph(R[2])
    traced = make_fx(frozen, tracing_mode="symbolic", _allow_non_fake_inputs=True)(R[2], z, ei, sh)
    atoms, edges = torch.export.Dim("atoms", min=2, max=1 << 20), torch.export.Dim("edges", min=1, max=1 << 24)
    program = torch.export.export(traced, (R[2], z, ei, sh), strict=False,
                                  dynamic_shapes=({0: atoms}, {0: atoms}, {1: edges}, {0: edges}))
    worst = 0.0
    for n in (21, 9):
        ei, sh = graph(R[1][:n])
        e_x, f_x = program.module()(R[1][:n], z[:n], ei, sh)
        e_e, f_e = eager(m, R[1][:n], z[:n])
        worst = max(worst, abs(float(e_x - e_e)), float((f_x - f_e).abs().max()))
    print(f"make_fx(symbolic) + torch.export, dynamic atoms/edges, 21 and 9 atoms: max |d| vs eager {worst:.1e}")
    for p in frozen.parameters():
        p.requires_grad_(True)


def et_conditioning(m, z, R):
    from empp_ff.model._imports import import_e3nn_o3

    o3 = import_e3nn_o3()
    c_ = m.channels
    keep = torch.arange(21) != 5
    graphs = [(R[0][1:], z[1:]), (R[1][keep], z[keep]), (R[2][:-1], z[:-1])]  # three "masked copies"
    cond = [torch.randn(3, 4 * c_, dtype=torch.float64) for _ in m.layers]
    pos, zs, ei, sh, b = _batched(graphs)
    with torch.no_grad():
        plain = m(pos, zs, ei, sh)[0]
        with conditioning(m, cond, b):
            e_b, _, v_b = m(pos, zs, ei, sh)
        after = m(pos, zs, ei, sh)[0]
        worst = 0.0
        for k, g in enumerate(graphs):
            p1, z1, ei1, sh1, b1 = _batched([g])
            with conditioning(m, [c[k:k + 1] for c in cond], b1):
                e1, _, v1 = m(p1, z1, ei1, sh1)
            worst = max(worst, float((e1 - e_b[b == k]).abs().max()), float((v1 - v_b[b == k]).abs().max()))
        q = o3.rand_matrix().to(torch.float64)
        d = o3.Irreps(f"{c_}x0e+{c_}x1o").D_from_matrix(q)
        with conditioning(m, [c @ d.T for c in cond], b):
            e_rot = m(pos @ q.T, zs, ei, sh)[0]
    print(f"conditioning: changes the masked pass by {(e_b - plain).abs().max():.1e}, leaves nothing behind "
          f"({(after - plain).abs().max():.0e}); 3 copies in one pass == 3 single passes to {worst:.0e}; "
          f"rotated positions + rotated code give the same energies to {(e_rot - e_b).abs().max():.0e}")


def probe_et():
    torch.manual_seed(0)
    z, R = aspirin()
    m = ETBackbone().eval()
    with torch.no_grad():
        for p in m.parameters():  # far from the (nearly flat) initialisation
            p.add_(0.1 * torch.randn_like(p))
    print(f"ET, 32 channels, 2 layers, float64: {sum(p.numel() for p in m.parameters())} parameters")
    et_symmetry_and_forces(m, z, R)
    et_export(m, z, R)
    et_conditioning(m, z, R)


def probe_equiformer_pytorch():
    warnings.simplefilter("ignore")
    from equiformer_pytorch import Equiformer

    z, R = aspirin(4, torch.float32)
    tok = torch.tensor([{1: 0, 6: 1, 8: 2}[int(a)] for a in z])[None]
    torch.manual_seed(0)
    model = Equiformer(num_tokens=3, dim=(32, 32), num_degrees=2, heads=(4, 4), dim_head=(8, 8), depth=2,
                       valid_radius=5.0, reduce_dim_out=True).eval()

    class Energy(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, tok, pos):
            return self.m(tok, pos, torch.ones_like(tok, dtype=torch.bool)).type0.sum()

    energy = Energy(model)
    times = []
    for i in range(5):
        p = R[i % 4][None].clone().requires_grad_(True)
        t = time.perf_counter()
        torch.autograd.grad(energy(tok, p), p)
        times.append(time.perf_counter() - t)
    print(f"equiformer-pytorch 32 ch, degrees 0-1, depth 2: {sum(p.numel() for p in model.parameters())} "
          f"parameters; energy+forces {1e3 * np.median(times):.0f} ms (aspirin, 1 thread)")
    t3 = torch.tensor([[1, 1, 1]])
    with torch.no_grad():
        e = [float(energy(t3, torch.tensor([[[0.0, 0, 0], [0, 0, 1.2], [0, 0, r]]]))) for r in (4.999, 5.001)]
    print(f"energy jump for a pair moved 0.002 Å across valid_radius: {abs(e[0] - e[1]):.2e}")
    try:
        torch.jit.script(model)
        print("torch.jit.script: OK")
    except Exception as exc:  # noqa: BLE001 - any failure is the finding
        print(f"torch.jit.script: fails ({type(exc).__name__}: {str(exc).splitlines()[0][:80]})")
    traced = torch.jit.trace(energy, (tok, R[0][None]), check_trace=False)
    try:
        traced(tok[:, :12], R[1][None, :12])
        print("torch.jit.trace at 21 atoms, called with 12: runs")
    except Exception as exc:  # noqa: BLE001
        print(f"torch.jit.trace at 21 atoms, called with 12: fails ({type(exc).__name__})")


def probe_speed(reps: int = 12):
    from empp_ff.model.backbone import MACEBackbone
    from empp_ff.testing.models import demo_spec

    z, R = aspirin(8, torch.float32)
    mace = MACEBackbone(demo_spec((1, 6, 8), num_channels=32, max_L=1, num_interactions=2, r_max=5.0,
                                  dtype="float32", radial_mlp=[64, 64, 64], mlp_irreps="16x0e"))
    nets = {"MACE 32ch L=1, 2 interactions": mace,
            "ET 32ch, 2 layers": ETBackbone(32, 2, 4, 16, dtype=torch.float32),
            "ET 64ch, 4 layers": ETBackbone(64, 4, 8, 32, dtype=torch.float32)}
    times = {k: ([], []) for k in nets}
    for rep in range(reps):  # interleaved, so that load changes hit every model alike
        for name, net in nets.items():
            p = R[rep % 8].clone().requires_grad_(True)
            ei, sh = graph(p.detach())
            t = time.perf_counter()
            torch.autograd.grad(net(p, z, ei, sh)[0].sum(), p)
            times[name][0].append(time.perf_counter() - t)
            t = time.perf_counter()
            g = torch.autograd.grad(net(p, z, ei, sh)[0].sum(), p, create_graph=True)[0]
            g.pow(2).sum().backward()
            times[name][1].append(time.perf_counter() - t)
    for name, (ef, train) in times.items():
        print(f"{name} ({sum(p.numel() for p in nets[name].parameters())} parameters): energy+forces "
              f"{1e3 * np.median(ef[2:]):.1f} ms, with the training backward {1e3 * np.median(train[2:]):.1f} ms")


if __name__ == "__main__":
    torch.set_num_threads(1)
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    for name, fn in (("et", probe_et), ("equiformer_pytorch", probe_equiformer_pytorch), ("speed", probe_speed)):
        if which in (name, "all"):
            fn()
