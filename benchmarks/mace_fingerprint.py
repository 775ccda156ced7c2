#!/usr/bin/env python
"""A fingerprint of the MACE path's numbers: does a change of empp-ff's code change them?

Builds a small seeded MACE potential (16 channels, correlation 2, r_max 5 Å, float64),
evaluates energies and forces (with create_graph) on 8 frames of the bundled aspirin data,
takes one Adam step on the energy + force loss, and prints the loss and a SHA-256 of the
energies, forces and updated weights. Run it under two source trees; equal hashes mean
equal numbers to the last bit, forward, forces, gradients and all:

    PYTHONPATH=/path/to/old/checkout python benchmarks/mace_fingerprint.py old
    PYTHONPATH=. python benchmarks/mace_fingerprint.py new

Uses only what every empp-ff version since the demo data has (testing.models, testing.batches).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import torch

KCAL_TO_EV = 0.0433641


def fingerprint() -> tuple:
    import empp_ff
    from empp_ff.testing.batches import collate, molecule_graph
    from empp_ff.testing.models import demo_potential, demo_spec

    torch.set_num_threads(1)
    data = np.load(Path(empp_ff.__file__).parent / "data" / "demo" / "aspirin_demo.npz")
    z = torch.as_tensor(data["z"], dtype=torch.long)
    graphs = [molecule_graph(torch.as_tensor(data["R"][i], dtype=torch.float64), z, 5.0,
                             energy=float(np.ravel(data["E"][i])[0]) * KCAL_TO_EV,
                             forces=torch.as_tensor(data["F"][i] * KCAL_TO_EV)) for i in range(8)]
    b = collate(graphs)
    pot = demo_potential(demo_spec((1, 6, 8), num_channels=16, correlation=2, r_max=5.0), seed=0, perturb=0.05)
    pot.train()
    opt = torch.optim.Adam(pot.parameters(), lr=1e-3)
    out = pot(b.positions, b.atomic_numbers, b.edge_index, b.shifts, b.batch, b.num_graphs,
              compute_forces=True, create_graph=True)
    loss = ((out["energy"] - b.energy) ** 2).mean() + 80 * ((out["forces"] - b.forces) ** 2).mean()
    h = hashlib.sha256()
    h.update(out["energy"].detach().numpy().tobytes())
    h.update(out["forces"].detach().numpy().tobytes())
    opt.zero_grad()
    loss.backward()
    opt.step()
    for p in pot.parameters():
        h.update(p.detach().numpy().tobytes())
    return float(loss), h.hexdigest(), str(Path(empp_ff.__file__).parent.parent)


if __name__ == "__main__":
    loss, digest, source = fingerprint()
    print(f"{sys.argv[1] if len(sys.argv) > 1 else 'this tree'}: loss {loss!r} sha256 {digest} ({source})")
