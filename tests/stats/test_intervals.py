"""Intervals: exact t quantiles, zero width for identical samples, width ~ 1/sqrt(n), weights."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qigbench.stats import (
    ExampleScores,
    Interval,
    Measurement,
    StatsError,
    bootstrap_interval,
    interval,
    mean_of,
    t_interval,
    t_quantile,
)

finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False)

# two-sided 95% critical values of Student's t (any printed table)
T_TABLE = {1: 12.7062047, 2: 4.3026527, 3: 3.1824463, 5: 2.5705818, 10: 2.2281389, 30: 2.0422725, 120: 1.9799304}


@pytest.mark.parametrize("df", sorted(T_TABLE))
def test_t_quantile_matches_the_table(df: int) -> None:
    assert t_quantile(0.975, df) == pytest.approx(T_TABLE[df], abs=1e-6)


def test_t_quantile_matches_scipy_everywhere() -> None:
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 4, 7, 19, 60, 199, 201, 500, 5000, 10**6):
        for p in (0.9, 0.95, 0.975, 0.995):
            assert t_quantile(p, df) == pytest.approx(float(stats.t.ppf(p, df)), rel=1e-6), (p, df)


@given(value=finite, n=st.integers(2, 40))
@settings(deadline=None)
def test_identical_samples_have_zero_width(value: float, n: int) -> None:
    for ci in (t_interval([value] * n), bootstrap_interval([value] * n)):
        assert ci.width == 0.0 and ci.low == ci.mean == ci.high == pytest.approx(value)


@given(st.lists(finite, min_size=2, max_size=30).filter(lambda xs: max(xs) - min(xs) > 1e-6))
@settings(max_examples=40, deadline=None)
def test_interval_contains_the_mean_and_widens_with_confidence(xs: list[float]) -> None:
    for make in (t_interval, bootstrap_interval):
        narrow, mid, wide = (make(xs, confidence=c) for c in (0.8, 0.95, 0.99))
        assert narrow.low <= narrow.mean <= narrow.high
        assert narrow.width <= mid.width + 1e-12 <= wide.width + 2e-12
        assert mid.mean == pytest.approx(float(np.mean(xs)))


@given(st.lists(finite, min_size=3, max_size=20).filter(lambda xs: np.std(xs) > 1e-3), st.integers(2, 6))
@settings(max_examples=40, deadline=None)
def test_t_width_shrinks_like_one_over_sqrt_n(xs: list[float], m: int) -> None:
    """Tiling a sample m times keeps its spread; the half-width falls by sqrt((n-1)/(mn-1)) * t ratio,
    i.e. 1/sqrt(m) up to the t quantiles and the n-1 correction."""
    n = len(xs)
    base, tiled = t_interval(xs), t_interval(xs * m)
    expected = t_quantile(0.975, m * n - 1) / t_quantile(0.975, n - 1) * math.sqrt((n - 1) / (m * n - 1))
    assert tiled.half_width / base.half_width == pytest.approx(expected, rel=1e-9)
    if n >= 15:  # where t ~ normal, this is 1/sqrt(m) itself
        assert tiled.half_width / base.half_width == pytest.approx(1 / math.sqrt(m), rel=0.12)


def _t(xs: np.ndarray, i: int) -> Interval:
    return t_interval(xs)


def _boot(xs: np.ndarray, i: int) -> Interval:
    return bootstrap_interval(xs, iters=500, seed=i)


@pytest.mark.parametrize("make", [_t, _boot], ids=["t", "bootstrap"])
def test_average_width_halves_when_n_quadruples(make: Callable[[np.ndarray, int], Interval]) -> None:
    rng = np.random.default_rng(7)

    def width(n: int) -> float:
        return float(np.mean([make(rng.normal(size=n), i).width for i in range(150)]))

    assert width(100) / width(25) == pytest.approx(0.5, abs=0.04)


def test_weighted_bootstrap_gives_back_the_token_average() -> None:
    per_prompt = [0.1, 0.4, 0.2]
    tokens = [10.0, 30.0, 60.0]
    ci = bootstrap_interval(per_prompt, tokens)
    assert ci.mean == pytest.approx((1 + 12 + 12) / 100)
    assert ci.low < ci.mean < ci.high
    assert bootstrap_interval(per_prompt, tokens, seed=3) == bootstrap_interval(per_prompt, tokens, seed=3)


def test_interval_of_a_measurement_picks_seeds_then_examples() -> None:
    ex = ExampleScores.of([0.0, 1.0, 1.0, 0.0])
    assert interval(Measurement({0: 0.5, 1: 0.7})).method == "t over seeds"  # type: ignore[union-attr]
    one = interval(Measurement({0: 0.5}, {0: ex}))
    assert one is not None and one.method == "bootstrap over examples" and one.mean == 0.5
    assert interval(Measurement({0: 0.5})) is None  # nothing to estimate a spread from


def test_mean_of_pools_tasks_into_the_mean_of_task_means() -> None:
    a = Measurement({0: 0.5}, {0: ExampleScores.of([0.0, 1.0])})
    b = Measurement({0: 0.1}, {0: ExampleScores.of([0.1, 0.1, 0.1, 0.1, 0.1])})
    pooled = mean_of([a, b])
    assert pooled.seeds == {0: pytest.approx(0.3)}
    assert pooled.examples[0].mean() == pytest.approx(0.3)  # not 0.6/7: each task weighs the same


def test_bad_input_names_the_fix() -> None:
    with pytest.raises(StatsError, match="at least two"):
        t_interval([1.0])
    with pytest.raises(StatsError, match="confidence"):
        t_interval([1.0, 2.0], confidence=95)
    with pytest.raises(StatsError, match="no values"):
        bootstrap_interval([])
    with pytest.raises(StatsError, match="one of each"):
        ExampleScores(("a",), (1.0, 2.0))
    with pytest.raises(StatsError, match="positive"):
        bootstrap_interval([1.0, 2.0], [1.0, 0.0])
