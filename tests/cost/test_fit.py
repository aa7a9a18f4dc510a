"""The least-squares depth fit behind the predictor: recovers a known slope from noisy timings, never
clamps, and says when the fit cannot be trusted."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qigbench.cost.errors import CostModelError
from qigbench.cost.fit import fit_line


@given(
    fixed=st.floats(5.0, 200.0), slope=st.floats(1.0, 100.0), seed=st.integers(0, 2**16),
    noise=st.floats(0.0, 0.03),
)  # fmt: skip
def test_recovers_a_known_slope_from_noisy_timings(fixed: float, slope: float, seed: int, noise: float) -> None:
    rng = random.Random(seed)
    depths = [1, 2, 3, 4, 5, 6] * 3  # six depths, three timings each
    values = [(fixed + slope * d) * (1 + rng.uniform(-noise, noise)) for d in depths]
    fit = fit_line(depths, values, "prepare time")
    # each value is off by at most e = noise * (fixed + 6 slope); the least-squares slope then by at most
    # e * sum|d - mean d| / sum (d - mean d)^2 = e * 27 / 52.5 over these depths
    tolerance = noise * (fixed + 6 * slope) * 27 / 52.5 + 1e-9
    assert fit.slope == pytest.approx(slope, abs=tolerance)
    assert fit.at(6) == pytest.approx(fixed + 6 * slope, rel=2 * noise + 1e-9)


def test_exact_points_give_the_exact_line_and_no_warning() -> None:
    fit = fit_line([1, 2, 3], [10.0, 14.0, 18.0], "prepare time")
    assert (fit.fixed, fit.slope) == pytest.approx((6.0, 4.0))
    assert fit.residual_rms == pytest.approx(0.0, abs=1e-12) and fit.warnings == ()


def test_a_negative_slope_is_an_error_that_names_the_fix() -> None:
    # two noisy timings of the issue: the slope came out negative and was clamped to 0 (prediction 32% low)
    with pytest.raises(CostModelError, match=r"negative .*--blocks 4"):
        fit_line([1, 2, 3], [30.0, 29.0, 27.5], "prepare time")


def test_a_negative_slope_can_be_kept_with_a_warning() -> None:
    fit = fit_line([1, 2, 3], [30.0, 29.0, 27.5], "prepare peak", "bytes", negative="warn")
    assert fit.slope == pytest.approx(-1.25)  # kept as fitted, not 0
    assert any("negative" in w and "not clamped" in w for w in fit.warnings)


def test_two_depths_fit_exactly_but_are_flagged() -> None:
    fit = fit_line([2, 3], [14.0, 18.0], "prepare time")
    assert fit.slope == pytest.approx(4.0)
    assert any("2 depths" in w for w in fit.warnings)


def test_a_negative_fixed_part_and_a_large_scatter_are_flagged_not_clamped() -> None:
    fit = fit_line([1, 2, 3], [1.0, 20.0, 21.0], "prepare time")
    assert fit.fixed < 0  # kept
    assert any("fixed part is negative" in w for w in fit.warnings)
    assert any("scatter" in w for w in fit.warnings)


def test_one_depth_cannot_be_fitted() -> None:
    with pytest.raises(CostModelError, match="--blocks 3"):
        fit_line([2, 2], [10.0, 11.0], "prepare time")
