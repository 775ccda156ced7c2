"""The statistic every EMPP accuracy claim uses (empp_ff.testing.benchmarking)."""

import math

import pytest

from empp_ff.testing.benchmarking import machine_info, ratio_interval, t95, verdict


def test_ratio_interval_is_a_t_interval_on_log_ratios():
    ratios = [0.9, 1.0, 1.1, 0.95]
    logs = [math.log(r) for r in ratios]
    mean = sum(logs) / 4
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / 3)
    got = ratio_interval(ratios)
    assert got["n"] == 4 and got["ratio"] == pytest.approx(math.exp(mean))
    assert got["low"] == pytest.approx(math.exp(mean - 3.182 * sd / 2))
    assert got["high"] == pytest.approx(math.exp(mean + 3.182 * sd / 2))
    assert verdict(got) == "no difference"
    assert verdict(ratio_interval([0.8, 0.82, 0.79])) == "better"
    assert verdict(ratio_interval([1.2, 1.25, 1.22])) == "worse"
    assert math.isnan(ratio_interval([0.9])["low"]) and ratio_interval([])["n"] == 0


def test_t_quantiles_and_machine_record():
    assert t95(2) == 4.303 and t95(35) == 2.042  # the nearest tabulated dof below
    info = machine_info()
    assert info["cores"] >= 1 and info["load_1min"] >= 0 and info["torch"]
