"""What benchmark scripts share: the machine they ran on and its load, interleaved timing,
the MD runner the ASE speed benchmarks step, and the paired-ratio statistic every EMPP
accuracy claim uses (geometric mean of variant/baseline test-MAE ratios with a two-sided
95 % Student-t interval on the mean of log-ratios)."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence


def cpu_model() -> str:
    """The CPU model name (from /proc/cpuinfo on Linux)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> Dict[str, Any]:
    """CPU, core count, load average now, torch version: recorded with every timing."""
    import torch

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "load_1min": round(os.getloadavg()[0], 2),
            "torch": torch.__version__, "python": platform.python_version()}


def write_results(out, doc: Dict[str, Any], markdown: str, indent: int = 2) -> None:
    """``OUT.json`` (``doc``) and ``OUT.md`` (``markdown``): the pair of files every benchmark
    writes (``out`` without suffix; its folder is made)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=indent, default=str) + "\n")
    out.with_suffix(".md").write_text(markdown)


def load_average() -> List[float]:
    """The 1, 5 and 15 minute load averages, to two decimals (recorded at a benchmark's
    start and end: on a shared machine they say how much else ran)."""
    return [round(v, 2) for v in os.getloadavg()]


def interleaved(runners: Dict[str, Callable[[], float]], steps: int, warmup: int,
                progress: Optional[Callable[[int, Dict[str, float]], None]] = None) -> Dict[str, List[float]]:
    """Call every runner once per round, ``warmup + steps`` rounds, the order rotating by one
    each round, so that load changes on a shared CPU hit all of them alike. A runner does one
    step and returns the seconds it measured; returns {name: seconds of the timed rounds}.
    ``progress(round, {name: seconds})`` is called after each round."""
    names = list(runners)
    times: Dict[str, List[float]] = {name: [] for name in names}
    for i in range(warmup + steps):
        shift = i % len(names)
        measured = {name: runners[name]() for name in names[shift:] + names[:shift]}
        if i >= warmup:
            for name, seconds in measured.items():
                times[name].append(seconds)
        if progress is not None:
            progress(i, measured)
    return times


def step_rates(seconds: Sequence[float]) -> Dict[str, float]:
    """Median and mean milliseconds per step and steps per second (of the median)."""
    median = statistics.median(seconds)
    return {"steps": len(seconds), "median_ms_per_step": 1e3 * median,
            "mean_ms_per_step": 1e3 * statistics.fmean(seconds), "steps_per_s": 1.0 / median}


def cost_calculator(model_path):
    """EMPPCalculator for timing MD on random weights. Those pull atoms together within ~100
    steps, where the instability guard would stop the run: a min_distance of 1e-6 Å keeps
    the guard's per-step cost (the closest-pair check) but not the stop (MACECalculator has
    no guard)."""
    from empp_ff.inference.calculator import EMPPCalculator

    return EMPPCalculator(str(model_path), device="cpu", min_distance=1e-6)


class MDRunner:
    """One VelocityVerlet trajectory (0.5 fs, from 300 K Maxwell-Boltzmann velocities of a
    seeded generator) of a copy of ``atoms`` under ``calc``; ``step()`` advances one step and
    returns its seconds."""

    def __init__(self, atoms, calc):
        import numpy as np
        from ase import units
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
        from ase.md.verlet import VelocityVerlet

        self.atoms = atoms.copy()
        self.atoms.calc = calc
        MaxwellBoltzmannDistribution(self.atoms, temperature_K=300, rng=np.random.default_rng(0))
        self.dyn = VelocityVerlet(self.atoms, timestep=0.5 * units.fs)

    def step(self) -> float:
        start = time.perf_counter()
        self.dyn.run(1)
        return time.perf_counter() - start


# Two-sided 95 % Student-t quantiles by degrees of freedom (scipy is not a dependency).
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
        20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


def t95(dof: int) -> float:
    """The two-sided 95 % t quantile (the nearest tabulated dof at or below ``dof``)."""
    return _T95[max(k for k in _T95 if k <= dof)]


def ratio_interval(ratios: Sequence[float]) -> Dict[str, float]:
    """{"ratio", "low", "high", "n"}: geometric mean of ``ratios`` and its 95 % interval."""
    logs = [math.log(r) for r in ratios]
    n = len(logs)
    if n == 0:
        return {"ratio": math.nan, "low": math.nan, "high": math.nan, "n": 0}
    centre = statistics.mean(logs)
    if n == 1:
        return {"ratio": math.exp(centre), "low": math.nan, "high": math.nan, "n": 1}
    half = t95(n - 1) * statistics.stdev(logs) / math.sqrt(n)
    return {"ratio": math.exp(centre), "low": math.exp(centre - half), "high": math.exp(centre + half), "n": n}


def verdict(interval: Dict[str, float]) -> str:
    """'better' / 'worse' when the interval excludes 1, else 'no difference'."""
    if interval["n"] < 2:
        return "one pair"
    if interval["high"] < 1:
        return "better"
    if interval["low"] > 1:
        return "worse"
    return "no difference"
