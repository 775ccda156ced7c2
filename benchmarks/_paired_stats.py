"""Paired ratios with a 95 % interval (moved to ``empp_ff.testing.benchmarking``; kept as
a name for the older study scripts that import it)."""

from empp_ff.testing.benchmarking import ratio_interval, t95, verdict  # noqa: F401
