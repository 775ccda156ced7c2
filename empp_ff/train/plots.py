"""End-of-training plots (parity and learning curves) as PNG files.

Uses matplotlib's object API with the Agg canvas, so it never touches the
global pyplot state or backend of the user's process.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, NamedTuple, Tuple

import numpy as np

from empp_ff.train.auxiliaries import KNOWN


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


class Panel(NamedTuple):
    """One learning-curve panel: drawn when one of its ``curves`` ((column, legend label), ...)
    has data. ``role``: ``errors`` (supervised MAEs), ``objective`` (the training objective),
    ``auxiliary`` (an auxiliary loss) or ``auxiliary_part`` (a part of one, e.g. EMPP's KLs)."""

    title: str
    curves: List[Tuple[str, str]]
    role: str


def _train_and_val(column: str) -> List[Tuple[str, str]]:
    return [(column, "train"), (f"val_{column}", "validation")]


def learning_curve_panels() -> List[Panel]:
    """Every panel a run may draw: errors, objective, then each auxiliary loss's outputs."""
    panels = [Panel("energy MAE (meV)", [("train_energy_mae_mev", "train"), ("val_energy_mae_mev", "validation")],
                    "errors"),
              Panel("forces MAE (meV/Å)", [("train_forces_mae_mev_per_a", "train"),
                                           ("val_forces_mae_mev_per_a", "validation")], "errors"),
              Panel("loss (training objective)", [("train_loss", "train"), ("val_loss", "validation")], "objective")]
    for kind in KNOWN:
        for i, (column, what) in enumerate(kind.outputs.items()):
            panels.append(Panel(f"{kind.label} {what}", _train_and_val(column),
                                "auxiliary" if i == 0 else "auxiliary_part"))
    return panels


def _series(history: List[Dict], key: str) -> List[float]:
    values = [row.get(key, float("nan")) for row in history]
    return [float(v) if isinstance(v, (int, float)) else float("nan") for v in values]


def _has_data(values: List[float]) -> bool:
    return any(math.isfinite(v) and v > 0 for v in values)


def learning_curves_figure(history: List[Dict]):
    """The learning-curve figure: one panel per quantity the run recorded (a
    supervised run: MAEs and loss; a pre-training run: the EMPP losses)."""
    from matplotlib.ticker import MaxNLocator

    panels = [p for p in learning_curve_panels() if any(_has_data(_series(history, key)) for key, _ in p.curves)]
    if any(p.role == "errors" for p in panels):  # supervised: an auxiliary's parts are in its loss
        panels = [p for p in panels if p.role != "auxiliary_part"]
    else:  # pre-training: the objective is the (weighted) EMPP loss, shown on its own
        panels = [p for p in panels if p.role != "objective"]
    fig = _figure(ncols=max(1, len(panels)))
    epochs = [row["epoch"] for row in history]
    for i, (title, curves, _) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        shown = []
        for key, label in curves:
            values = _series(history, key)
            if _has_data(values):  # markers: a one-epoch run still shows its point
                ax.plot(epochs, values, marker="o", markersize=3, label=label)
                shown += [v for v in values if math.isfinite(v) and v > 0]
        if max(shown) > 10 * min(shown):  # log scale only where it spans decades
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def learning_curves(history: List[Dict], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "learning_curves.png"
    _save(learning_curves_figure(history), path)
    return path
