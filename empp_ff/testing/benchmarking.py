"""What benchmark scripts share: the machine they ran on, and the paired-ratio statistic
every EMPP accuracy claim uses (geometric mean of variant/baseline test-MAE ratios with
a two-sided 95 % Student-t interval on the mean of log-ratios)."""

from __future__ import annotations

import math
import os
import platform
from statistics import mean, stdev
from typing import Any, Dict, Sequence


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
    centre = mean(logs)
    if n == 1:
        return {"ratio": math.exp(centre), "low": math.nan, "high": math.nan, "n": 1}
    half = t95(n - 1) * stdev(logs) / math.sqrt(n)
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
