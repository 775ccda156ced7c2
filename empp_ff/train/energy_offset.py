"""Refit the per-element reference energies to the model's residual on the training set.

Forces do not see a constant energy offset, and with the usual loss weights
(energy 1, forces 80-100) the energy term carries well under 1 % of the gradient,
so the mean energy error drifts freely during training: models trained for tens of
epochs carry an offset of tens to hundreds of meV that every test frame shares
(every parity point above the diagonal). The offset is linear in the reference
energies, so its least-squares optimum has a closed form: with n_gz the count of
element z in structure g and r_g = E_g − Ê_g the residual on the training set,
δ = argmin Σ_g (r_g − Σ_z n_gz δ_z)² (minimum-norm for single-composition data),
and E0_z += δ_z removes it without changing any force.

Run after every epoch on a fixed sample of the training set (energies only, no
forces, so it costs a forward pass over at most ``max_structures`` structures).
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np
import torch


def energy_residuals(potential, loader, device: torch.device):
    """(residuals [G] in eV, composition counts [G, n_elements]) over ``loader``."""
    backbone = potential.backbone
    n_elements = int(backbone.num_elements)
    residuals: List[np.ndarray] = []
    counts: List[np.ndarray] = []
    was_training = potential.training
    potential.eval()
    try:
        with torch.no_grad():
            for batch in loader:
                batch = batch.to(device)
                has = batch.has_energy.to(torch.bool)
                if not bool(has.any()):
                    continue
                out = potential(batch.positions, batch.atomic_numbers, batch.edge_index, batch.shifts,
                                batch.batch, int(batch.num_graphs), compute_forces=False)
                r = (batch.energy.to(torch.float64) - out["energy"].to(torch.float64))[has]
                species = backbone.z_to_index[batch.atomic_numbers]
                c = torch.zeros(int(batch.num_graphs), n_elements, dtype=torch.float64, device=r.device)
                c.index_put_((batch.batch, species), torch.ones_like(species, dtype=torch.float64), accumulate=True)
                residuals.append(r.cpu().numpy())
                counts.append(c[has].cpu().numpy())
    finally:
        potential.train(was_training)
    if not residuals:
        return np.zeros(0), np.zeros((0, n_elements))
    return np.concatenate(residuals), np.concatenate(counts)


def fit_offsets(residuals: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per-element δ (eV) minimising Σ (r − counts·δ)² (minimum norm when rank-deficient)."""
    if residuals.size == 0:
        return np.zeros(counts.shape[1])
    delta, *_ = np.linalg.lstsq(counts, residuals, rcond=None)
    return delta


def refit_reference_energies(potential, loader, device: torch.device) -> Dict[str, float]:
    """Shift the backbone's per-element reference energies by the fitted δ, in place.

    Returns the mean residual before and after (eV per structure) for logging.
    """
    residuals, counts = energy_residuals(potential, loader, device)
    delta = fit_offsets(residuals, counts)
    backbone = potential.backbone
    current = np.asarray(backbone.spec_dict["atomic_energies"], dtype=np.float64)
    backbone.set_reference_energies(current + delta)
    after = residuals - counts @ delta if residuals.size else residuals
    return {"mean_residual_before_ev": float(residuals.mean()) if residuals.size else 0.0,
            "mean_residual_after_ev": float(after.mean()) if after.size else 0.0}
