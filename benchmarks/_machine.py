"""What the benchmark scripts record about the machine they ran on (moved to
``empp_ff.testing.benchmarking``; kept as a name for the older scripts that import it)."""

from empp_ff.testing.benchmarking import cpu_model  # noqa: F401
