"""End-of-training plots (parity and learning curves) as PNG files.

Uses matplotlib's object API with the Agg canvas, so it never touches the
global pyplot state or backend of the user's process.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List

import numpy as np


def _figure(ncols: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.6 * ncols, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> None:
    """Atomically: a reader (or a kill) never sees a half-written PNG."""
    from empp_ff._atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def _parity(ax, ref, pred, label, unit):
    ref, pred = np.asarray(ref), np.asarray(pred)
    ax.scatter(ref, pred, s=4, alpha=0.5, linewidths=0)
    lo, hi = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
    mae = float(np.mean(np.abs(pred - ref)))
    ax.set_xlabel(f"reference {label} ({unit})")
    ax.set_ylabel(f"predicted {label} ({unit})")
    ax.set_title(f"{label}: MAE {1000 * mae:.2f} m{unit}")


def parity_plots(predictions: Dict, out_dir: Path) -> List[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if len(predictions["energy_ref"]):
        fig = _figure()
        n = predictions["n_atoms"].numpy()
        _parity(fig.add_subplot(), predictions["energy_ref"].numpy() / n, predictions["energy_pred"].numpy() / n,
                "energy per atom", "eV")
        fig.tight_layout()
        path = out_dir / "parity_energy.png"
        _save(fig, path)
        written.append(path)
    if len(predictions["forces_ref"]):
        fig = _figure()
        _parity(fig.add_subplot(), predictions["forces_ref"].numpy().ravel(),
                predictions["forces_pred"].numpy().ravel(), "force component", "eV/Å")
        fig.tight_layout()
        path = out_dir / "parity_forces.png"
        _save(fig, path)
        written.append(path)
    return written


def learning_curves(history: List[Dict], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    panels = [
        ("energy MAE (meV)", ["train_energy_mae_mev", "val_energy_mae_mev"]),
        ("forces MAE (meV/Å)", ["train_forces_mae_mev_per_a", "val_forces_mae_mev_per_a"]),
        ("loss", ["train_loss", "val_loss", "empp_loss"]),
    ]
    fig = _figure(ncols=len(panels))
    epochs = [row["epoch"] for row in history]
    for i, (title, keys) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for key in keys:
            values = [row.get(key, float("nan")) for row in history]
            if any(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in values):
                ax.plot(epochs, values, label=key)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    path = out_dir / "learning_curves.png"
    _save(fig, path)
    return path
