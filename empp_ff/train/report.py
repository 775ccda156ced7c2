"""What a run reports: the ``metrics.csv`` columns, the per-epoch log line, and
the final report (learning curves; the best checkpoint's test-split errors,
parity plots and ``test_metrics.json``, the run's last commit: a finished run is
reported from it again, never re-evaluated; see ``train/rundir/protocol.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List

import torch

from empp_ff.train.auxiliaries import KNOWN, SELF_SUPERVISED
from empp_ff.train.checkpoint import has_ema_weights, load_checkpoint, potential_weights
from empp_ff.train.empp_replay import REPLAY_LOSS
from empp_ff.train.evaluate import evaluate, format_error_table
from empp_ff.train.objective import SUPERVISED_PARTS, grad_cos_key, grad_norm_key

SUPERVISED_TRAIN_COLUMNS = ["train_loss", "train_energy_loss", "train_forces_loss"]
SUPERVISED_VAL_COLUMNS = ["val_loss", "val_energy_mae_mev", "val_energy_rmse_mev", "val_forces_mae_mev_per_a",
                          "val_forces_rmse_mev_per_a"]


def metric_columns() -> List[str]:
    """The metrics.csv columns: the supervised objective's parts, then every auxiliary loss's
    outputs (and EMPP replay's), errors, the same on the validation split, gradient diagnostics
    (``train.grad_norm_every``) and the model-selection metric."""
    train_aux = [key for kind in KNOWN for key in kind.outputs] + [REPLAY_LOSS]
    val_aux = [key for kind in KNOWN for key in kind.validation_columns()]
    terms = list(SUPERVISED_PARTS) + [kind.name for kind in KNOWN]
    return ["epoch", "step", "lr", "wall_time_s", *SUPERVISED_TRAIN_COLUMNS, *train_aux,
            "train_energy_mae_mev", "train_forces_mae_mev_per_a", *SUPERVISED_VAL_COLUMNS, *val_aux,
            *[grad_norm_key(t) for t in terms], *[grad_cos_key(kind.name) for kind in KNOWN],
            "val_weighted_mae"]  # model selection (supervised): energy_weight * E/atom MAE + forces_weight * F MAE


METRIC_COLUMNS = metric_columns()


def epoch_line(row: Dict[str, Any], improved: bool, max_epochs: int, supervised: bool) -> str:
    parts = [f"epoch {row['epoch']:>4}/{max_epochs}", f"lr {row['lr']:.2e}"]
    if supervised:
        parts += [f"val E MAE {row['val_energy_mae_mev']:.1f} meV",
                  f"F MAE {row['val_forces_mae_mev_per_a']:.1f} meV/Å"]
    for kind in KNOWN:
        if kind.loss_key() in row:
            val = row.get(kind.validation_columns()[0], float("nan"))
            parts.append(f"{kind.label} {row[kind.loss_key()]:.3f} (val {val:.3f})")
    if REPLAY_LOSS in row:
        parts.append(f"replay EMPP {row[REPLAY_LOSS]:.3f}")
    parts.append(f"{row['wall_time_s']:.0f} s")
    return "  ".join(parts) + ("  *" if improved else "")


def _test_errors(best: Dict[str, Any], potential, test_set, batch_size: int, device: torch.device,
                 progress: bool, plots: Path) -> Dict[str, Any]:
    from torch_geometric.loader import DataLoader

    from empp_ff.train.plots import parity_plots

    # best.pt's (EMA) weights in the training potential: training is over, and a rebuild costs seconds
    potential.load_state_dict(potential_weights(best))
    loader = DataLoader(test_set, batch_size=batch_size, shuffle=False)
    metrics, acc = evaluate(potential, loader, device, keep_predictions=True, progress=progress, desc="test")
    parity_plots(acc.stacked_predictions(), plots)
    return {**metrics, "per_element_forces_mae_mev_per_a": acc.per_element()}


def log_result(result: Dict[str, Any], run_dir: Path, supervised: bool, log: Callable[[str], None]) -> None:
    if "energy_mae_mev" in result:
        log(format_error_table(result, result.get("per_element_forces_mae_mev_per_a"), title=f"Test set ({run_dir})"))
    elif supervised:
        log(f"no test split (data.n_test = 0), nothing to evaluate; best epoch {result['epoch']}: "
            f"val energy MAE {result.get('val_energy_mae_mev', float('nan')):.1f} meV, "
            f"forces MAE {result.get('val_forces_mae_mev_per_a', float('nan')):.1f} meV/Å")
    else:
        selection = SELF_SUPERVISED.validation_columns()[0]
        log(f"self-supervised run: best val {SELF_SUPERVISED.label} loss {result.get(selection, float('nan')):.4f} "
            f"at epoch {result['epoch']}")


def final_report(rundir, history: List[Dict[str, Any]], test_set, *, trained_epochs: int,
                 stopping: Dict[str, Any], supervised: bool,
                 potential, batch_size: int, device: torch.device, progress: bool,
                 log: Callable[[str], None]) -> Dict[str, Any]:
    """Evaluate ``checkpoints/best.pt`` (loaded into ``potential``) on ``test_set`` (the
    test graphs, or None for no supervised test: empty split or self-supervised run);
    write plots and ``test_metrics.json`` (with ``stopping``: how training ended, the best
    epoch, epochs run and wall time); return what it holds. ``rundir``: the
    run's :class:`~empp_ff.train.rundir.RunDirectory`."""
    from empp_ff.train.plots import learning_curves

    done = rundir.finished_result(trained_epochs)
    if done is not None:  # a finished run: report it again, do not re-evaluate
        log(f"{rundir.root} is a finished run ({trained_epochs} epochs); results from test_metrics.json:")
        log_result(done, rundir.root, supervised, log)
        return done
    if history:
        learning_curves(history, rundir.plots)
    best = load_checkpoint(rundir.best)
    result: Dict[str, Any] = {"checkpoint": "checkpoints/best.pt", "epoch": int(best["epoch"]),
                              "ema": has_ema_weights(best), **stopping}
    if test_set is not None:
        result.update(_test_errors(best, potential, test_set, batch_size, device, progress, rundir.plots))
    else:
        result.update({k: v for k, v in best.get("val_metrics", {}).items() if k.startswith("val_")})
    result = rundir.commit_result(result, trained_epochs)
    log_result(result, rundir.root, supervised, log)
    return result
