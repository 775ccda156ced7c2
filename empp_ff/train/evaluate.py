"""Evaluate on a data loader: a potential's MAE/RMSE of energies and forces, and an
auxiliary loss's validation losses."""

from __future__ import annotations

from typing import Dict, Tuple

import torch

from empp_ff.auxiliary.loss import AuxiliaryLoss
from empp_ff.train.metrics import ErrorAccumulator


def predict(potential, batch, compute_forces: bool = True, create_graph: bool = False) -> Dict[str, torch.Tensor]:
    return potential(
        batch.positions,
        batch.atomic_numbers,
        batch.edge_index,
        batch.shifts,
        batch.batch,
        int(batch.num_graphs),
        compute_forces=compute_forces,
        create_graph=create_graph,
    )


def evaluate(potential, loader, device: torch.device, keep_predictions: bool = False,
             progress: bool = False, desc: str = "eval", dist=None,
             loss_fn=None) -> Tuple[Dict[str, float], ErrorAccumulator]:
    """Errors over ``loader``; with ``dist`` (DDP), sums are reduced over ranks.
    ``loss_fn(pred, batch)``: its mean over the batches is reported as ``loss``."""
    acc = ErrorAccumulator(keep_predictions=keep_predictions)
    was_training = potential.training
    potential.eval()
    iterator = loader
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True)
    try:
        for batch in iterator:
            batch = batch.to(device)
            with torch.enable_grad():  # forces need autograd even at evaluation
                pred = predict(potential, batch, compute_forces=bool(batch.has_forces.any()))
            acc.add({k: v.detach() for k, v in pred.items()}, batch)
            if loss_fn is not None:
                acc.add_loss(float(loss_fn(pred, batch).detach()))
    finally:
        potential.train(was_training)
    if dist is not None:
        acc.all_reduce(dist, device)
    return acc.summary(), acc


def format_error_table(metrics: Dict[str, float], per_element: Dict[str, float] | None = None, title: str = "") -> str:
    import math

    rows = [("structures", f"{metrics.get('n_structures', 0)}", "")]
    for label, key, fmt, unit in [
        ("energy MAE", "energy_mae_mev", ".2f", "meV"),
        ("energy RMSE", "energy_rmse_mev", ".2f", "meV"),
        ("energy mean error", "energy_mean_error_mev", "+.2f", "meV"),
        ("energy MAE / atom", "energy_per_atom_mae_mev", ".3f", "meV/atom"),
        ("forces MAE", "forces_mae_mev_per_a", ".2f", "meV/Å"),
        ("forces RMSE", "forces_rmse_mev_per_a", ".2f", "meV/Å"),
    ]:
        value = metrics.get(key, float("nan"))
        if math.isfinite(value):  # energy-only data has no force rows
            rows.append((label, format(value, fmt), unit))
    for symbol, value in (per_element or {}).items():
        rows.append((f"forces MAE ({symbol})", f"{value:.2f}", "meV/Å"))
    width = max(len(r[0]) for r in rows)
    lines = [title] if title else []
    lines.append("-" * (width + 24))
    lines += [f"{name:<{width}}  {value:>12}  {unit}" for name, value, unit in rows]
    lines.append("-" * (width + 24))
    return "\n".join(lines)


def validation_losses(model, aux: AuxiliaryLoss, loader, seed: int, use_labels: bool, device: torch.device,
                      dist) -> Dict[str, float]:
    """``aux``'s outputs on the validation ``loader`` for ``model`` (a TrainingModel), with the
    same random draws every epoch; ``val_<output>`` keys, averaged over all ranks' batches."""
    from empp_ff.data.dataset import epoch_generator
    from empp_ff.train.distributed import reduce_mean_dict

    generator = epoch_generator(seed + aux.validation_seed, 0)
    sums: Dict[str, float] = {}
    count = 0
    model.eval()
    for batch in loader:
        values = model.validation_step(aux, batch.to(device), generator, use_labels)
        for key, value in values.items():
            sums[key] = sums.get(key, 0.0) + value
        count += 1
    return {f"val_{k}": v for k, v in reduce_mean_dict(dist, sums, count, device).items()}
