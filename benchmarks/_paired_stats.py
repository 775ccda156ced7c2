"""Paired ratios with a 95 % interval: the statistic every EMPP generalisation claim uses.

A ratio is variant / baseline test MAE for one (molecule, seed), both trained on the same
split for the same epochs. Over several pairs the summary is the geometric mean (the
mean of log-ratios, exp'd back) with a two-sided 95 % Student-t interval on the mean of
log-ratios; a gain counts only where the whole interval lies below 1.
"""

from __future__ import annotations

import math
from statistics import mean, stdev
from typing import Dict, Sequence

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
        return {"ratio": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    centre = mean(logs)
    if n == 1:
        return {"ratio": math.exp(centre), "low": float("nan"), "high": float("nan"), "n": 1}
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
