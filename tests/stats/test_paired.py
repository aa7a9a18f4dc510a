"""Paired comparisons: a method against itself is not distinguishable, known shifts are detected at
the rate the test's power predicts, false alarms at about 1 - confidence, verdicts flip with order."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qigbench.stats import ExampleScores, Measurement, StatsError, Verdict, compare, sign_test

score = st.floats(min_value=-100, max_value=100, allow_nan=False, allow_infinity=False)


@st.composite
def measurements(draw: st.DrawFn) -> Measurement:
    """1-4 seeds, each with (or all without) 2-15 example scores, optionally token-weighted."""
    seeds = draw(st.lists(st.integers(0, 50), min_size=1, max_size=4, unique=True))
    n = draw(st.integers(2, 15))
    with_examples = draw(st.booleans())
    weighted = draw(st.booleans())
    values, examples = {}, {}
    for s in seeds:
        xs = draw(st.lists(score, min_size=n, max_size=n))
        ws = draw(st.lists(st.floats(0.5, 50), min_size=n, max_size=n)) if weighted else None
        ex = ExampleScores.of(xs, ws)
        values[s] = ex.mean()
        if with_examples:
            examples[s] = ex
    return Measurement(values, examples)


@given(measurements(), st.booleans())
@settings(max_examples=80, deadline=None)
def test_a_method_against_itself_is_not_distinguishable(m: Measurement, higher_is_better: bool) -> None:
    found = compare(m, m, higher_is_better)
    assert found.verdict is Verdict.INDISTINGUISHABLE
    assert found.diff == 0.0 and found.low == 0.0 and found.high == 0.0


@given(measurements(), st.floats(0.5, 10), st.booleans())
@settings(max_examples=60, deadline=None)
def test_a_constant_shift_on_every_example_and_seed_is_always_detected(
    m: Measurement, shift: float, higher_is_better: bool
) -> None:
    """No noise in the difference: the test must see it (when there is anything to test with)."""
    moved = Measurement(
        {s: v + shift for s, v in m.seeds.items()},
        {s: ExampleScores(e.ids, tuple(v + shift for v in e.values), e.weights) for s, e in m.examples.items()},
    )
    found = compare(moved, m, higher_is_better)
    assert found.diff == pytest.approx(shift)
    if found.tested:
        assert found.verdict is (Verdict.BETTER if higher_is_better else Verdict.WORSE)
        assert compare(m, moved, higher_is_better).verdict is (Verdict.WORSE if higher_is_better else Verdict.BETTER)
    else:  # one seed, no examples: nothing to test with
        assert len(m.seeds) == 1 and not m.examples and found.verdict is Verdict.INDISTINGUISHABLE


def _pair(rng: np.random.Generator, n: int, shift: float) -> tuple[Measurement, Measurement]:
    """B's examples ~ N(0, 1) (shared difficulty); A = B + N(shift, 1): paired differences ~ N(shift, 1)."""
    b = rng.normal(size=n) * 3.0
    a = b + rng.normal(loc=shift, size=n)
    ea, eb = ExampleScores.of(a), ExampleScores.of(b)
    return Measurement({0: ea.mean()}, {0: ea}), Measurement({0: eb.mean()}, {0: eb})


def _rate(shift: float, n: int, trials: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for i in range(trials):
        a, b = _pair(rng, n, shift)
        hits += compare(a, b, higher_is_better=True, iters=1000, seed=i).verdict is Verdict.BETTER
    return hits / trials


def test_paired_bootstrap_detects_a_known_shift_at_the_expected_rate() -> None:
    """n = 40 paired differences ~ N(delta, 1) with delta = (z_.975 + z_.80) / sqrt(40): a two-sided
    95% test has 80% power. The shared difficulty (sd 3) would drown it in an unpaired test."""
    n, trials = 40, 300
    delta = (1.959964 + 0.841621) / np.sqrt(n)
    assert _rate(delta, n, trials, seed=1) == pytest.approx(0.80, abs=0.08)
    # and with no shift it claims "better" in about 2.5% of trials (one side of a 95% interval)
    assert _rate(0.0, n, trials, seed=2) <= 0.06


def test_paired_t_over_seeds_detects_a_known_shift_at_the_expected_rate() -> None:
    """6 seeds, per-seed differences ~ N(1.44, 1): the paired t test's power is 0.80 (noncentral t)."""
    rng = np.random.default_rng(3)
    hits = false = 0
    trials = 400
    for _ in range(trials):
        base = rng.normal(size=6) * 5.0
        for shift, counter in ((1.44, "hit"), (0.0, "false")):
            a = Measurement(dict(enumerate(base + rng.normal(loc=shift, size=6))))
            b = Measurement(dict(enumerate(base)))
            better = compare(a, b, higher_is_better=True).verdict is Verdict.BETTER
            if counter == "hit":
                hits += better
            else:
                false += better
    assert hits / trials == pytest.approx(0.80, abs=0.07)
    assert false / trials == pytest.approx(0.025, abs=0.025)


def test_two_level_bootstrap_counts_seed_noise() -> None:
    """Examples agree perfectly within each seed, but the seeds disagree on the sign: not significant."""
    ids = tuple(str(i) for i in range(20))
    a = Measurement(
        {0: 1.0, 1: -1.0, 2: 1.0}, {s: ExampleScores(ids, (v,) * 20) for s, v in ((0, 1.0), (1, -1.0), (2, 1.0))}
    )
    b = Measurement({0: 0.0, 1: 0.0, 2: 0.0}, {s: ExampleScores(ids, (0.0,) * 20) for s in (0, 1, 2)})
    found = compare(a, b, higher_is_better=True)
    assert found.verdict is Verdict.INDISTINGUISHABLE and "3 seeds" in found.test
    one_seed = compare(Measurement({0: 1.0}, {0: a.examples[0]}), Measurement({0: 0.0}, {0: b.examples[0]}), True)
    assert one_seed.verdict is Verdict.BETTER  # within one seed it is a certain difference


def test_examples_pair_by_id_not_position() -> None:
    a = Measurement({0: 0.5}, {0: ExampleScores(("x", "y", "z"), (1.0, 0.0, 0.5))})
    b = Measurement({0: 0.5}, {0: ExampleScores(("z", "x", "y"), (0.5, 1.0, 0.0))})
    assert compare(a, b, True).diff == 0.0 and compare(a, b, True).low == 0.0


def test_sign_test_exact_values() -> None:
    assert sign_test([1.0] * 5) == pytest.approx(2 / 32)
    assert sign_test([1.0] * 6) == pytest.approx(2 / 64)
    assert sign_test([1.0, -1.0, 1.0, 0.0]) == pytest.approx(1.0)
    assert sign_test([0.0, 0.0]) == 1.0
    six = Measurement(dict(enumerate([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])))
    zero = Measurement(dict(enumerate([0.0] * 6)))
    assert compare(six, zero, True, seed_test="sign").verdict is Verdict.BETTER  # p = 1/32 < 0.05
    five = Measurement(dict(enumerate([1.0] * 5)))
    assert compare(five, Measurement(dict(enumerate([0.0] * 5))), True, seed_test="sign").verdict is (
        Verdict.INDISTINGUISHABLE  # p = 1/16: five seeds cannot reach 95% with a sign test
    )
    with pytest.raises(StatsError, match="seed_test"):
        compare(six, zero, True, seed_test="wilcoxon")  # type: ignore[arg-type]
