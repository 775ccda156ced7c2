"""Validation of one model-file call, shared by the TorchScript wrapper and the
compiled-package runner (a TorchScript-compatible free function: the wrapper's
copy is compiled into every exported ``.pt``)."""

from __future__ import annotations

import torch


def check_model_inputs(
    positions: torch.Tensor,
    atomic_numbers: torch.Tensor,
    edge_index: torch.Tensor,
    shifts: torch.Tensor,
    n_local: int,
    known_species: torch.Tensor,
) -> None:
    """Raise ``ValueError`` naming the problem when the call breaks the contract.

    ``known_species``: bool [119], true at the model's atomic numbers."""
    num_atoms = positions.shape[0]
    if positions.dim() != 2 or positions.shape[1] != 3:
        raise ValueError("positions must be [N, 3]")
    if atomic_numbers.dim() != 1 or atomic_numbers.shape[0] != num_atoms:
        raise ValueError("positions and atomic_numbers have different lengths (atomic_numbers must be [N])")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError("edge_index must be [2, E]")
    if shifts.dim() != 2 or shifts.shape[0] != edge_index.shape[1] or shifts.shape[1] != 3:
        raise ValueError("shifts must be [E, 3] with E the number of edges")
    if n_local < 0 or n_local > num_atoms:
        raise ValueError("n_local must lie in [0, number of atoms]")
    if num_atoms > 0:
        if int(atomic_numbers.min()) < 0 or int(atomic_numbers.max()) >= known_species.shape[0]:
            raise ValueError("atomic number outside 0..118")
        if not bool(known_species[atomic_numbers].all()):
            raise ValueError("atomic number not in the model's species; see the atomic_numbers attribute")
