"""Reference driver of the layer-wise ("halo") protocol of model files (torch + numpy).

The LAMMPS pair style evaluates a model file layer by layer on each MPI rank's
local atoms, with a ghost shell of one r_max, exchanging node features of ghost
atoms between layers. This module does the same on fake domains in one process,
so that the contract (``halo_prepare`` / ``halo_layer``, see
``empp_ff.export.exporter``) is testable and documented by code without LAMMPS:

* :func:`decompose` splits a structure into a grid of bricks; each brick owns the
  atoms inside it and holds as ghosts every periodic image within ``ghost_cut``
  of it (like LAMMPS' ghost atoms), edges only into its own atoms;
* :func:`evaluate` runs the forward pass with ghost features copied from their
  owners (LAMMPS forward communication) and the backward pass with gradients
  w.r.t. ghost features summed into their owners (reverse communication), and
  returns energy, per-atom energies, forces and the virial sum of x (x) f over all
  copies (what LAMMPS' ``virial_fdotr_compute`` adds up).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from empp_ff.neighbours import neighbour_graph


@dataclass
class Domain:
    """One fake rank: nodes are its local atoms first, then its ghosts."""

    n_local: int
    atom: np.ndarray  # node -> atom index of the structure
    positions: np.ndarray  # node positions (ghost images carry their offsets)
    owner: np.ndarray  # node -> owning domain
    owner_row: np.ndarray  # node -> row of the atom in the owner
    edge_index: np.ndarray  # [2, E] senders (any node), receivers (local nodes)


def decompose(atoms, grid: Sequence[int], r_max: float, ghost_cut: float) -> List[Domain]:
    """Bricks of the cell (periodic, orthorhombic) or of the bounding box."""
    pos = atoms.get_positions()
    periodic = bool(atoms.pbc.all())
    grid = np.asarray(grid, dtype=int)
    if periodic:
        if not np.allclose(atoms.cell.array, np.diag(np.diag(atoms.cell.array))):
            raise ValueError("decompose() needs an orthorhombic cell")
        length = np.diag(atoms.cell.array).copy()
        pos = pos - np.floor(pos / length) * length
        lo_box = np.zeros(3)
    else:
        lo_box = pos.min(0) - 1e-6
        length = pos.max(0) + 1e-6 - lo_box
    width = length / grid
    brick = np.minimum(((pos - lo_box) / width).astype(int), grid - 1)
    rank_of = np.ravel_multi_index(brick.T, grid)
    nranks = int(grid.prod())
    row_of = np.zeros(len(pos), dtype=int)
    locals_ = [np.flatnonzero(rank_of == r) for r in range(nranks)]
    for members in locals_:
        row_of[members] = np.arange(len(members))
    reach = [int(np.ceil(ghost_cut / length[k])) + 1 if periodic else 0 for k in range(3)]
    images = list(itertools.product(*[range(-m, m + 1) for m in reach]))
    domains = []
    for r in range(nranks):
        lo = lo_box + np.array(np.unravel_index(r, grid)) * width
        hi = lo + width
        atom, node_pos = [locals_[r]], [pos[locals_[r]]]
        for image in images:
            shifted = pos + np.asarray(image) * length
            gap = np.maximum(np.maximum(lo - shifted, shifted - hi), 0.0)
            inside = np.sqrt((gap * gap).sum(1)) < ghost_cut
            if not any(image):
                inside &= rank_of != r
            atom.append(np.flatnonzero(inside))
            node_pos.append(shifted[inside])
        atom_ = np.concatenate(atom)
        node_pos_ = np.concatenate(node_pos)
        n_local = len(locals_[r])
        ei, _ = neighbour_graph(node_pos_, r_max)
        ei = ei[:, ei[1] < n_local]
        domains.append(Domain(n_local, atom_, node_pos_, rank_of[atom_], row_of[atom_], ei))
    return domains


def _ghost_rows(d: Domain, outputs: List[torch.Tensor]) -> torch.Tensor:
    """The ghosts' rows of layer outputs ``outputs[rank]``, copied from their owners."""
    rows = torch.zeros(len(d.atom) - d.n_local, outputs[0].shape[1], dtype=outputs[0].dtype)
    for o, out in enumerate(outputs):
        mine = torch.from_numpy(d.owner[d.n_local:] == o)
        rows[mine] = out.detach()[torch.from_numpy(d.owner_row[d.n_local:])[mine]]
    return rows


def _forward(model, domains, numbers, num_layers):
    states = []
    for d in domains:
        pos = torch.tensor(d.positions, dtype=torch.float64, requires_grad=True)
        z = torch.tensor(np.asarray(numbers)[d.atom], dtype=torch.long)
        edge_index = torch.tensor(d.edge_index, dtype=torch.long)
        shifts = torch.zeros(edge_index.shape[1], 3, dtype=torch.float64)
        ctx = model.halo_prepare(pos, z, edge_index, shifts, d.n_local)
        states.append({"pos": pos, "ctx": ctx, "in": [], "out": [], "energy": []})
    for t in range(num_layers):
        for d, s in zip(domains, states):
            feats: Optional[torch.Tensor] = None
            if t > 0:  # forward communication: ghost rows = their owners' rows
                feats = torch.cat([s["out"][t - 1].detach(), _ghost_rows(d, [st["out"][t - 1] for st in states])])
                feats.requires_grad_(True)
            out, energy = model.halo_layer(t, s["ctx"], feats, d.n_local)
            s["in"].append(feats)
            s["out"].append(out)
            s["energy"].append(energy)
    return states


def _backward(domains, states, num_layers):
    grads_out: List[Optional[torch.Tensor]] = [None] * len(domains)
    for s in states:
        s["grad_pos"] = torch.zeros_like(s["pos"])
    for t in reversed(range(num_layers)):
        received = [torch.zeros_like(s["out"][t - 1]) if t > 0 else None for s in states]
        for r, (d, s) in enumerate(zip(domains, states)):
            outputs, seeds = [s["energy"][t]], [torch.ones_like(s["energy"][t])]
            if grads_out[r] is not None:
                outputs.append(s["out"][t])
                seeds.append(grads_out[r])
            inputs = [s["pos"]] + ([s["in"][t]] if t > 0 else [])
            grads = torch.autograd.grad(outputs, inputs, seeds, retain_graph=t > 0, allow_unused=True)
            if grads[0] is not None:
                s["grad_pos"] += grads[0]
            if t > 0:  # reverse communication: ghost rows summed into their owners
                received[r][: d.n_local] += grads[1][: d.n_local]
                ghost = torch.arange(d.n_local, len(d.atom))
                for o in range(len(domains)):
                    mine = torch.from_numpy(d.owner[d.n_local:] == o)
                    rows = torch.from_numpy(d.owner_row[d.n_local:])[mine]
                    received[o].index_add_(0, rows, grads[1][ghost[mine]])
        grads_out = received


def evaluate(model, atoms, grid=(1, 1, 1), skin: float = 1.0) -> Dict[str, np.ndarray]:
    """Energy, per-atom energies, forces and virial of ``atoms`` by the halo protocol
    on a ``grid`` of fake domains with a ghost shell of r_max + skin."""
    r_max = float(model.r_max)
    num_layers = int(model.num_interactions)
    domains = decompose(atoms, grid, r_max, r_max + skin)
    # no profiling executor: it would re-specialise for every domain's shapes
    with torch.jit.optimized_execution(False):
        states = _forward(model, domains, atoms.numbers, num_layers)
        _backward(domains, states, num_layers)
    n = len(atoms)
    forces, node_energy, virial = np.zeros((n, 3)), np.zeros(n), np.zeros((3, 3))
    for d, s in zip(domains, states):
        f = -s["grad_pos"].detach().numpy()
        np.add.at(forces, d.atom, f)
        virial += d.positions.T @ f
        node_energy[d.atom[: d.n_local]] = sum(e.detach().double() for e in s["energy"]).numpy()
    return {
        "energy": float(node_energy.sum()),
        "node_energy": node_energy,
        "forces": forces,
        "virial": 0.5 * (virial + virial.T),
        "domains": domains,
    }
