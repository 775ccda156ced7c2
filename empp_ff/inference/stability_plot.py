"""The stability test's figure: h(r) of the stable MD against the reference, and each
run's largest bond deviation over time with the collapse threshold.

matplotlib's object API with the Agg canvas (no global pyplot state); written atomically.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict

import numpy as np


def stability_plot(trace, report: Dict[str, Any], path: Path, title: str = "") -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from empp_ff._atomic import atomic_path

    fig = Figure(figsize=(10.0, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax_hr, ax_dev = fig.subplots(1, 2)
    centres = 0.5 * (trace.r_edges[1:] + trace.r_edges[:-1])
    ax_hr.plot(centres, trace.hr_reference, color="k", lw=1.2, label="reference")
    hr_mae = report["hr_mae"]
    md_label = "MD (stable part)" + (f", MAE {hr_mae:.3f}" if math.isfinite(hr_mae) else ", no stable frame")
    ax_hr.plot(centres, trace.hr_md, color="tab:red", lw=1.0, label=md_label)
    ax_hr.set_xlabel("r (Å)")
    ax_hr.set_ylabel("h(r) (1/Å)")
    ax_hr.legend(frameon=False)
    times = np.asarray(trace.check_times_ps)
    for k, deviations in enumerate(trace.max_deviation):
        ax_dev.plot(times[:len(deviations)], deviations, lw=0.9,
                    label=f"run {k + 1}: {report['stable_ps'][k]:.2f} ps" + (" (collapsed)" if report["collapsed"][k]
                                                                          else ""))
    ax_dev.axhline(report["max_bond_deviation_A"], color="k", ls="--", lw=0.8)
    ax_dev.set_xlabel("time (ps)")
    ax_dev.set_ylabel("largest bond deviation (Å)")
    ax_dev.legend(frameon=False, fontsize=7)
    fig.suptitle(title or f"{report['temperature_K']:.0f} K NVT, median stable time "
                 f"{report['stable_ps_median']:.2f} of {report['time_ps']:g} ps")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
