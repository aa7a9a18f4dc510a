"""Confidence intervals for one measured number: Student-t over seeds, bootstrap over examples.

Why two: calibration seeds are the repeats that capture a method's own randomness (which
calibration images it saw), so with two or more seeds the interval is the t-interval of the
per-seed values. With a single seed the only spread left is the evaluation's own sampling
noise (which prompts or questions were asked), so the interval is a percentile bootstrap over
examples. Both are deterministic: the bootstrap draws from ``numpy.random.default_rng(seed)``.

The t quantile is computed here (numerical integration of the t density, then bisection) so
the package needs numpy only; ``tests/stats`` checks it against scipy where that is installed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from qigbench.errors import QigbenchError

DEFAULT_CONFIDENCE = 0.95
DEFAULT_ITERS = 2000
DEFAULT_SEED = 0


class StatsError(QigbenchError, ValueError):
    """Bad input to a statistic (empty sample, confidence outside (0, 1), mismatched lengths)."""


@dataclass(frozen=True)
class Interval:
    """``mean`` with a two-sided ``confidence`` interval ``[low, high]`` from ``n`` values."""

    mean: float
    low: float
    high: float
    n: int
    method: str  # "t over seeds" | "bootstrap over examples" | ...
    confidence: float = DEFAULT_CONFIDENCE

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0

    @property
    def width(self) -> float:
        return self.high - self.low

    def scaled(self, factor: float) -> Interval:
        lo, hi = sorted((self.low * factor, self.high * factor))
        return Interval(self.mean * factor, lo, hi, self.n, self.method, self.confidence)


def check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise StatsError(f"confidence must lie in (0, 1), e.g. 0.95; got {confidence!r}")


def _t_cdf_upper_half(x: float, df: int) -> float:
    """P(0 <= T <= x) for Student's t with ``df`` degrees of freedom (Simpson's rule; x >= 0)."""
    # substitute u = atan(t / sqrt(df)): the density becomes c * cos(u)^(df-1), smooth on [0, pi/2)
    upper = math.atan(x / math.sqrt(df))
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(math.pi)
    steps = 2000
    h = upper / steps
    total = 0.0
    for i in range(steps + 1):
        w = 1 if i in (0, steps) else (4 if i % 2 else 2)
        total += w * math.cos(i * h) ** (df - 1)
    return c * total * h / 3


@lru_cache(maxsize=256)
def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile (p > 0.5) of Student's t with ``df`` >= 1 degrees of freedom."""
    if df < 1:
        raise StatsError(f"t quantile needs df >= 1, got {df}")
    if not 0.5 < p < 1.0:
        raise StatsError(f"t_quantile takes an upper quantile p in (0.5, 1), got {p}")
    if df > 200:  # Cornish-Fisher expansion (error < 1e-6 here); cos^(df-1) gets too peaked to integrate
        z = _normal_quantile(p)
        return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
    target = p - 0.5
    lo, hi = 0.0, 1.0
    while _t_cdf_upper_half(hi, df) < target:
        hi *= 2.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if _t_cdf_upper_half(mid, df) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _normal_quantile(p: float) -> float:
    lo, hi = 0.0, 40.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _as_array(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        raise StatsError(f"{what}: no values; measure at least one")
    if not np.all(np.isfinite(arr)):
        raise StatsError(f"{what}: values must be finite numbers")
    return arr


def t_interval(values: Sequence[float] | np.ndarray, confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """Student-t interval of the mean of ``values`` (at least two; identical values give zero width)."""
    check_confidence(confidence)
    arr = _as_array(values, "t interval")
    if arr.size < 2:
        raise StatsError("a t interval needs at least two values (seeds); with one, bootstrap over examples")
    if np.ptp(arr) == 0:  # identical values: no spread at all (the float mean may round off by an ulp)
        m = float(arr[0])
        return Interval(m, m, m, int(arr.size), "t over seeds", confidence)
    m = float(arr.mean())
    se = float(arr.std(ddof=1)) / math.sqrt(arr.size)
    half = t_quantile(0.5 + confidence / 2, arr.size - 1) * se
    return Interval(m, m - half, m + half, int(arr.size), "t over seeds", confidence)


def weighted_means(values: np.ndarray, weights: np.ndarray | None, idx: np.ndarray) -> np.ndarray:
    """Weighted mean of ``values[idx[r]]`` for every row ``r`` of an index matrix."""
    if weights is None:
        return np.asarray(values[idx].mean(axis=-1))
    w = weights[idx]
    return np.asarray((values[idx] * w).sum(axis=-1) / w.sum(axis=-1))


def weighted_mean(values: np.ndarray, weights: np.ndarray | None) -> float:
    return float(values.mean() if weights is None else (values * weights).sum() / weights.sum())


def percentile_bounds(reps: np.ndarray, point: float, n: int, confidence: float) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates, widened by ``sqrt(n / (n - 1))`` about ``point``.

    The plain percentile bootstrap estimates the spread with the ``1/n`` (not ``1/(n-1)``)
    variance and so is too narrow for small ``n`` (about 5% one-sided false alarms instead of
    2.5% at n = 40); the factor removes that bias.
    """
    alpha = (1.0 - confidence) / 2
    lo, hi = (float(x) for x in np.quantile(reps, [alpha, 1.0 - alpha]))
    c = math.sqrt(n / (n - 1))
    return point - (point - lo) * c, point + (hi - point) * c


def bootstrap_interval(
    values: Sequence[float] | np.ndarray,
    weights: Sequence[float] | np.ndarray | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    iters: int = DEFAULT_ITERS,
    seed: int = DEFAULT_SEED,
) -> Interval:
    """Percentile bootstrap of the (weighted) mean over examples.

    ``weights`` make the statistic a ratio estimator: a prompt's mean KL weighted by its token
    count reproduces the token-averaged KL the fidelity metric reports, and resampling prompts
    (not tokens) respects that tokens of one prompt are correlated.
    """
    check_confidence(confidence)
    arr = _as_array(values, "bootstrap")
    w = None if weights is None else _as_array(weights, "bootstrap weights")
    if w is not None and (w.shape != arr.shape or np.any(w <= 0)):
        raise StatsError("bootstrap weights must be positive, one per value")
    m = weighted_mean(arr, w)
    if arr.size < 2:
        raise StatsError("a bootstrap interval needs at least two examples")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, arr.size, size=(iters, arr.size))
    reps = weighted_means(arr, w, idx)
    lo, hi = percentile_bounds(reps, m, arr.size, confidence)
    lo, hi = max(lo, float(arr.min())), min(hi, float(arr.max()))  # a mean never leaves the data's range
    # identical examples: every replicate equals the mean, up to rounding; keep the width exactly 0
    if np.ptp(arr) == 0:
        lo = hi = m = float(arr[0])
    return Interval(m, min(float(lo), m), max(float(hi), m), int(arr.size), "bootstrap over examples", confidence)


__all__ = [
    "DEFAULT_CONFIDENCE",
    "DEFAULT_ITERS",
    "DEFAULT_SEED",
    "Interval",
    "StatsError",
    "bootstrap_interval",
    "t_interval",
    "t_quantile",
]
