"""Supervised losses and error metrics (energies in eV, forces in eV/Å).

Losses are dimensionless: energy errors per atom and force errors are divided
by the model's force scale (RMS force component of the training set), so the
weights (paper MD17 defaults: energy 1, forces 80, EMPP 50) do not depend on the
unit system or molecule.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Dict

import torch

from empp_ff._elements import TABLE_SIZE
from empp_ff.train.config import LossConfig


def _masked_forces(batch) -> torch.Tensor:
    return batch.has_forces[batch.batch]


def supervised_loss(pred: Dict[str, torch.Tensor], batch, cfg: LossConfig, scale: float) -> Dict[str, torch.Tensor]:
    zero = pred["energy"].new_zeros(())
    has_e = batch.has_energy
    loss_e = zero
    if cfg.energy_weight > 0 and bool(has_e.any()):
        de = (pred["energy"][has_e] - batch.energy[has_e]) / batch.n_atoms[has_e] / scale
        loss_e = de.pow(2).mean() if cfg.type == "mse" else de.abs().mean()
    loss_f = zero
    mask = _masked_forces(batch)
    if cfg.forces_weight > 0 and "forces" in pred and bool(mask.any()):
        df = (pred["forces"][mask] - batch.forces[mask]) / scale
        loss_f = df.pow(2).mean() if cfg.type == "mse" else df.norm(dim=-1).mean()
    total = cfg.energy_weight * loss_e + cfg.forces_weight * loss_f
    return {"loss": total, "energy_loss": loss_e, "forces_loss": loss_f}


class ErrorAccumulator:
    """Running MAE / RMSE of energies and forces, and per-element force MAE."""

    def __init__(self, keep_predictions: bool = False):
        self.sums = defaultdict(float)
        self.element_sums = defaultdict(float)
        self.element_counts = defaultdict(int)
        self.keep = keep_predictions
        self.predictions = {"energy_ref": [], "energy_pred": [], "n_atoms": [], "forces_ref": [], "forces_pred": []}

    @torch.no_grad()
    def add(self, pred: Dict[str, torch.Tensor], batch) -> None:
        has_e = batch.has_energy
        n = int(batch.num_graphs)
        self.sums["n_structures"] += n
        if bool(has_e.any()):
            de = (pred["energy"][has_e] - batch.energy[has_e]).double()
            self.sums["e_abs"] += de.abs().sum().item()
            self.sums["e_signed"] += de.sum().item()
            self.sums["e_sq"] += de.pow(2).sum().item()
            self.sums["e_n"] += int(has_e.sum())
            dpa = de / batch.n_atoms[has_e]
            self.sums["epa_abs"] += dpa.abs().sum().item()
            if self.keep:
                self.predictions["energy_ref"].append(batch.energy[has_e].double().cpu())
                self.predictions["energy_pred"].append(pred["energy"][has_e].detach().double().cpu())
                self.predictions["n_atoms"].append(batch.n_atoms[has_e].cpu())
        mask = _masked_forces(batch)
        if "forces" in pred and bool(mask.any()):
            df = (pred["forces"][mask] - batch.forces[mask]).double()
            self.sums["f_abs"] += df.abs().sum().item()
            self.sums["f_sq"] += df.pow(2).sum().item()
            self.sums["f_n"] += df.numel()
            per_atom = df.abs().mean(dim=-1)
            z = batch.atomic_numbers[mask]
            for element in torch.unique(z).tolist():
                sel = z == element
                self.element_sums[element] += per_atom[sel].sum().item()
                self.element_counts[element] += int(sel.sum())
            if self.keep:
                self.predictions["forces_ref"].append(batch.forces[mask].double().cpu())
                self.predictions["forces_pred"].append(pred["forces"][mask].detach().double().cpu())

    def add_loss(self, value: float) -> None:
        """One batch's loss (the mean over batches is reported as ``loss``)."""
        self.sums["loss_sum"] += value
        self.sums["loss_n"] += 1

    _KEYS = ("n_structures", "e_abs", "e_signed", "e_sq", "e_n", "epa_abs", "f_abs", "f_sq", "f_n",
             "loss_sum", "loss_n")

    def all_reduce(self, dist, device) -> None:
        """Sum the running totals over DDP ranks (no-op in a single process)."""
        if not dist.enabled:
            return
        elements = list(range(1, TABLE_SIZE))
        m = len(elements)
        values = [self.sums[k] for k in self._KEYS]
        values += [self.element_sums[z] for z in elements] + [float(self.element_counts[z]) for z in elements]
        totals = dist.all_reduce_sum(values, device)
        for k, v in zip(self._KEYS, totals):
            self.sums[k] = v
        n = len(self._KEYS)
        self.element_sums.clear()
        self.element_counts.clear()
        for i, z in enumerate(elements):
            if totals[n + m + i] > 0:
                self.element_sums[z] = totals[n + i]
                self.element_counts[z] = int(totals[n + m + i])

    def summary(self) -> Dict[str, float]:
        s = self.sums
        out: Dict[str, float] = {"n_structures": int(s["n_structures"])}
        nan = float("nan")
        e_n, f_n = s["e_n"], s["f_n"]
        out["energy_mae_mev"] = 1000 * s["e_abs"] / e_n if e_n else nan
        out["energy_rmse_mev"] = 1000 * (s["e_sq"] / e_n) ** 0.5 if e_n else nan
        # Mean signed error (predicted - reference): a systematic energy offset shows here.
        out["energy_mean_error_mev"] = 1000 * s["e_signed"] / e_n if e_n else nan
        out["energy_per_atom_mae_mev"] = 1000 * s["epa_abs"] / e_n if e_n else nan
        out["forces_mae_mev_per_a"] = 1000 * s["f_abs"] / f_n if f_n else nan
        out["forces_rmse_mev_per_a"] = 1000 * (s["f_sq"] / f_n) ** 0.5 if f_n else nan
        if s["loss_n"]:
            out["loss"] = s["loss_sum"] / s["loss_n"]
        return out

    def per_element(self) -> Dict[str, float]:
        from ase.data import chemical_symbols

        return {
            chemical_symbols[z]: 1000 * self.element_sums[z] / self.element_counts[z]
            for z in sorted(self.element_sums)
        }

    def stacked_predictions(self) -> Dict[str, torch.Tensor]:
        return {k: torch.cat(v) if v else torch.empty(0) for k, v in self.predictions.items()}
