"""Small molecular graphs and batches for EMPP tests and benchmarks (no store needed).

Graphs from :func:`empp_ff.neighbours.neighbour_graph` (the training graphs'
builder), no periodic images (shifts = 0); fields as the trainer's batches:
positions, atomic_numbers, edge_index, shifts, batch, ptr, energy, forces,
has_energy, has_forces.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch


def molecule_graph(positions: torch.Tensor, atomic_numbers: torch.Tensor, r_max: float,
                   energy: Optional[float] = None, forces: Optional[torch.Tensor] = None):
    from torch_geometric.data import Data

    from empp_ff.neighbours import neighbour_graph

    n = positions.shape[0]
    edges, _ = neighbour_graph(positions.detach().cpu().numpy(), r_max)
    edge_index = torch.as_tensor(edges, dtype=torch.long)  # [2, E]; both directions present
    has_e = energy is not None
    has_f = forces is not None
    return Data(
        positions=positions,
        atomic_numbers=atomic_numbers.long(),
        edge_index=edge_index,
        shifts=torch.zeros(edge_index.shape[1], 3, dtype=positions.dtype),
        energy=torch.tensor([energy if has_e else float("nan")], dtype=torch.float64),
        forces=forces if has_f else torch.full_like(positions, float("nan")),
        has_energy=torch.tensor([has_e]),
        has_forces=torch.tensor([has_f]),
        n_atoms=torch.tensor([n], dtype=torch.long),
        num_nodes=n,
    )


def collate(graphs: Sequence):
    from torch_geometric.data import Batch

    return Batch.from_data_list(list(graphs))


def random_molecule(num_atoms: int, species: Sequence[int], generator: torch.Generator,
                    dtype=torch.float64, min_dist: float = 0.9, box: float = 3.0):
    """Random positions (pairwise distance >= min_dist) and random elements."""
    pos = []
    while len(pos) < num_atoms:
        p = (torch.rand(3, generator=generator, dtype=torch.float64) - 0.5) * box
        if all(torch.linalg.norm(p - q) >= min_dist for q in pos):
            pos.append(p)
    z = torch.tensor(species, dtype=torch.long)[
        torch.randint(len(species), (num_atoms,), generator=generator)
    ]
    return torch.stack(pos).to(dtype), z
