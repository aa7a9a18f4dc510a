"""Uncertainty of measured numbers: intervals over seeds or examples, paired comparisons, verdicts.

Pure numpy, seeded, deterministic. Used by the report tables (mean +/- 95% interval, ties in the
best / second-best marking), the plots (error bars) and ``qigbench check`` (orderings as paired
tests). See :mod:`qigbench.stats.intervals` and :mod:`qigbench.stats.paired`.
"""

from __future__ import annotations

from qigbench.stats.intervals import (
    DEFAULT_CONFIDENCE,
    DEFAULT_ITERS,
    DEFAULT_SEED,
    Interval,
    StatsError,
    bootstrap_interval,
    t_interval,
    t_quantile,
)
from qigbench.stats.paired import (
    Comparison,
    ExampleScores,
    Measurement,
    Verdict,
    compare,
    interval,
    mean_of,
    sign_test,
)

__all__ = [
    "DEFAULT_CONFIDENCE",
    "DEFAULT_ITERS",
    "DEFAULT_SEED",
    "Comparison",
    "ExampleScores",
    "Interval",
    "Measurement",
    "StatsError",
    "Verdict",
    "bootstrap_interval",
    "compare",
    "interval",
    "mean_of",
    "sign_test",
    "t_interval",
    "t_quantile",
]
