"""What a run reports: the ``metrics.csv`` columns, the per-epoch log line, and
the final report (learning curves; the best checkpoint's test-split errors,
parity plots and ``test_metrics.json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List

import torch

from empp_ff.train.checkpoint import build_potential, load_checkpoint
from empp_ff.train.evaluate import evaluate, format_error_table
from empp_ff.train.io import write_json

METRIC_COLUMNS = [
    "epoch", "step", "lr", "wall_time_s",
    "train_loss", "train_energy_loss", "train_forces_loss",
    "empp_loss", "empp_radius_kl", "empp_direction_kl",
    "train_energy_mae_mev", "train_forces_mae_mev_per_a",
    "val_loss", "val_energy_mae_mev", "val_energy_rmse_mev",
    "val_forces_mae_mev_per_a", "val_forces_rmse_mev_per_a",
    "val_empp_loss", "val_empp_radius_kl", "val_empp_direction_kl",
    "denoise_loss",
    # train.grad_norm_every: what each loss term puts on the backbone's gradient (epoch means)
    "grad_norm_energy", "grad_norm_forces", "grad_norm_empp", "grad_norm_denoise",
    "grad_cos_forces_empp", "grad_cos_forces_denoise",
]


def epoch_line(row: Dict[str, Any], improved: bool, max_epochs: int, supervised: bool) -> str:
    parts = [f"epoch {row['epoch']:>4}/{max_epochs}", f"lr {row['lr']:.2e}"]
    if supervised:
        parts += [f"val E MAE {row['val_energy_mae_mev']:.1f} meV",
                  f"F MAE {row['val_forces_mae_mev_per_a']:.1f} meV/Å"]
    if "empp_loss" in row:
        parts.append(f"EMPP {row['empp_loss']:.3f} (val {row.get('val_empp_loss', float('nan')):.3f})")
    if "denoise_loss" in row:
        parts.append(f"denoise {row['denoise_loss']:.3f}")
    parts.append(f"{row['wall_time_s']:.0f} s")
    return "  ".join(parts) + ("  *" if improved else "")


def _test_errors(best: Dict[str, Any], test_set, batch_size: int, device: torch.device, progress: bool,
                 plots: Path, title: str, log: Callable[[str], None]) -> Dict[str, Any]:
    from torch_geometric.loader import DataLoader

    from empp_ff.train.plots import parity_plots

    potential = build_potential(best, use_ema=True).to(device)
    loader = DataLoader(test_set, batch_size=batch_size, shuffle=False)
    metrics, acc = evaluate(potential, loader, device, keep_predictions=True, progress=progress, desc="test")
    parity_plots(acc.stacked_predictions(), plots)
    log(format_error_table(metrics, acc.per_element(), title=title))
    return {**metrics, "per_element_forces_mae_mev_per_a": acc.per_element()}


def final_report(run_dir: Path, history: List[Dict[str, Any]], test_set, *, best_val: float, batch_size: int,
                 device: torch.device, progress: bool, log: Callable[[str], None]) -> Dict[str, Any]:
    """Evaluate ``checkpoints/best.pt`` on ``test_set`` (the test graphs, or None for
    no supervised test: empty split or self-supervised run); write plots and
    ``test_metrics.json``; return what it holds."""
    from empp_ff.train.plots import learning_curves

    plots = run_dir / "plots"
    if history:
        learning_curves(history, plots)
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    result: Dict[str, Any] = {"checkpoint": "checkpoints/best.pt", "epoch": int(best["epoch"]),
                              "ema": best.get("ema_potential_state") is not None}
    if test_set is not None:
        result.update(_test_errors(best, test_set, batch_size, device, progress, plots,
                                   f"Test set ({run_dir})", log))
    elif history:
        result.update({k: v for k, v in best.get("val_metrics", {}).items() if k.startswith("val_empp")})
        log(f"self-supervised run: best val EMPP loss {best_val:.4f}")
    write_json(run_dir / "test_metrics.json", result)
    return result
