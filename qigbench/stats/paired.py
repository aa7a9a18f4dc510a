"""Is method A really better than B? Paired comparisons with a verdict.

Both methods are measured on the same things: the same calibration seeds and, for each seed,
the same evaluation examples (prompts, questions). Pairing removes the variance the two share
(a hard question is hard for both), which is what makes a 0.3-point gap testable at all.

* examples on both sides: a paired bootstrap of ``mean(A) - mean(B)``; the same resampled
  examples for both methods, and with several seeds the seeds are resampled too (a two-level
  bootstrap: calibration randomness and evaluation sampling both count);
* per-seed values only (two seeds or more): the Student-t interval of the per-seed differences,
  or with ``seed_test="sign"`` the exact two-sided sign test;
* one value each and nothing per example: no test is possible; the verdict says so.

The verdict is *better* / *worse* when the ``confidence`` interval of the difference excludes
zero on that side, *not distinguishable* otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

import numpy as np

from qigbench.stats.intervals import (
    DEFAULT_CONFIDENCE,
    DEFAULT_ITERS,
    DEFAULT_SEED,
    Interval,
    StatsError,
    bootstrap_interval,
    check_confidence,
    percentile_bounds,
    t_interval,
    weighted_means,
)

SeedTest = Literal["t", "sign"]


@dataclass(frozen=True)
class ExampleScores:
    """Per-example scores of one metric on one task: ``ids`` pair them across methods.

    ``weights`` (optional, positive) make the metric a weighted mean, e.g. a prompt's mean KL
    weighted by its token count gives back the token-averaged KL.
    """

    ids: tuple[str, ...]
    values: tuple[float, ...]
    weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.values) or (self.weights is not None and len(self.weights) != len(self.values)):
            raise StatsError(
                f"example scores: {len(self.ids)} ids, {len(self.values)} values, "
                f"{'no' if self.weights is None else len(self.weights)} weights; give one of each per example"
            )
        if len(set(self.ids)) != len(self.ids):
            raise StatsError("example ids must be unique (one score per example)")
        if not all(math.isfinite(v) for v in self.values):
            raise StatsError("example scores must be finite numbers")
        if self.weights is not None and not all(w > 0 and math.isfinite(w) for w in self.weights):
            raise StatsError("example weights must be positive finite numbers")

    @classmethod
    def of(cls, values: Sequence[float], weights: Sequence[float] | None = None) -> ExampleScores:
        """Scores of examples numbered 0, 1, 2, ..."""
        ids = tuple(str(i) for i in range(len(values)))
        return cls(ids, tuple(float(v) for v in values), None if weights is None else tuple(float(w) for w in weights))

    def mean(self) -> float:
        v = np.asarray(self.values)
        if self.weights is None:
            return float(v.mean())
        w = np.asarray(self.weights)
        return float((v * w).sum() / w.sum())


@dataclass(frozen=True)
class Measurement:
    """One metric of one configuration: its value per calibration seed, and per example if known."""

    seeds: Mapping[int, float]
    examples: Mapping[int, ExampleScores] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return float(np.mean(list(self.seeds.values())))


class Verdict(StrEnum):
    BETTER = "better"
    WORSE = "worse"
    INDISTINGUISHABLE = "not distinguishable"


@dataclass(frozen=True)
class Comparison:
    """``a - b`` with its interval and what it means under the metric's direction."""

    diff: float
    low: float
    high: float
    verdict: Verdict
    test: str  # which test decided; "none" when there was nothing to test with
    n: int  # examples (bootstrap) or seeds (t / sign) the test used
    confidence: float = DEFAULT_CONFIDENCE
    p_value: float | None = None

    @property
    def tested(self) -> bool:
        return self.test != "none"


def interval(
    m: Measurement, confidence: float = DEFAULT_CONFIDENCE, iters: int = DEFAULT_ITERS, seed: int = DEFAULT_SEED
) -> Interval | None:
    """t over seeds (two or more), else bootstrap over the one seed's examples, else ``None``."""
    if len(m.seeds) >= 2:
        return t_interval(list(m.seeds.values()), confidence)
    if len(m.seeds) == 1:
        ex = m.examples.get(next(iter(m.seeds)))
        if ex is not None and len(ex.values) >= 2:
            got = bootstrap_interval(ex.values, ex.weights, confidence, iters, seed)
            value = next(iter(m.seeds.values()))  # the stored number; the examples' mean may be rounded
            return Interval(value, got.low + value - got.mean, got.high + value - got.mean, got.n, got.method)
    return None


def sign_test(diffs: Sequence[float]) -> float:
    """Exact two-sided sign test p-value of ``diffs`` (zeros dropped; 1.0 when all are zero)."""
    pos = sum(d > 0 for d in diffs)
    neg = sum(d < 0 for d in diffs)
    n = pos + neg
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(pos, neg) + 1)) / 2**n
    return min(1.0, 2 * tail)


def _verdict(low: float, high: float, higher_is_better: bool) -> Verdict:
    if low > 0:
        return Verdict.BETTER if higher_is_better else Verdict.WORSE
    if high < 0:
        return Verdict.WORSE if higher_is_better else Verdict.BETTER
    return Verdict.INDISTINGUISHABLE


def _paired_examples(a: Measurement, b: Measurement, seeds: list[int]) -> tuple[list[str], list[int]] | None:
    """Example ids present for both methods on every shared seed that has examples (in a's order)."""
    usable = [s for s in seeds if s in a.examples and s in b.examples]
    if not usable or len(usable) < len(seeds):
        return None
    common = set(a.examples[usable[0]].ids)
    for s in usable:
        common &= set(a.examples[s].ids) & set(b.examples[s].ids)
    ids = [i for i in a.examples[usable[0]].ids if i in common]
    return (ids, usable) if len(ids) >= 2 else None


def _matrix(m: Measurement, seeds: list[int], ids: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    rows, weights = [], []
    for s in seeds:
        ex = m.examples[s]
        where = {k: i for i, k in enumerate(ex.ids)}
        rows.append([ex.values[where[k]] for k in ids])
        weights.append(None if ex.weights is None else [ex.weights[where[k]] for k in ids])
    vals = np.asarray(rows, dtype=np.float64)
    if any(w is None for w in weights):
        return vals, None
    return vals, np.asarray(weights, dtype=np.float64)


def compare(
    a: Measurement,
    b: Measurement,
    higher_is_better: bool,
    confidence: float = DEFAULT_CONFIDENCE,
    iters: int = DEFAULT_ITERS,
    seed: int = DEFAULT_SEED,
    seed_test: SeedTest = "t",
) -> Comparison:
    """Paired comparison of ``a`` against ``b`` (see the module docstring for which test runs)."""
    check_confidence(confidence)
    if seed_test not in ("t", "sign"):
        raise StatsError(f"seed_test must be 't' or 'sign', got {seed_test!r}")
    shared = sorted(set(a.seeds) & set(b.seeds))
    if not shared:
        diff = a.mean - b.mean
        return Comparison(diff, diff, diff, Verdict.INDISTINGUISHABLE, "none", 0, confidence)
    paired = _paired_examples(a, b, shared)
    if paired is not None:
        ids, seeds = paired
        va, wa = _matrix(a, seeds, ids)
        vb, wb = _matrix(b, seeds, ids)
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, len(ids), size=(iters, len(ids)))
        per_seed = np.stack([weighted_means(va[k], None if wa is None else wa[k], idx) for k in range(len(seeds))])
        per_seed -= np.stack([weighted_means(vb[k], None if wb is None else wb[k], idx) for k in range(len(seeds))])
        full = np.arange(len(ids))[None, :]
        point = float(
            np.mean(
                [
                    weighted_means(va[k], None if wa is None else wa[k], full)[0]
                    - weighted_means(vb[k], None if wb is None else wb[k], full)[0]
                    for k in range(len(seeds))
                ]
            )
        )
        if len(seeds) > 1:  # resample seeds as well: calibration randomness is part of the noise
            pick = rng.integers(0, len(seeds), size=(iters, len(seeds)))
            reps = np.take_along_axis(per_seed.T, pick, axis=1).mean(axis=1)
            test = f"paired bootstrap over {len(seeds)} seeds x {len(ids)} examples"
        else:
            reps = per_seed[0]
            test = f"paired bootstrap over {len(ids)} examples"
        lo, hi = percentile_bounds(reps, point, len(ids), confidence)
        if np.ptp(reps) == 0:  # every replicate identical (e.g. a method against itself): exactly that
            lo = hi = point
        lo, hi = min(lo, point), max(hi, point)
        return Comparison(point, lo, hi, _verdict(lo, hi, higher_is_better), test, len(ids), confidence)
    diffs = [a.seeds[s] - b.seeds[s] for s in shared]
    if len(diffs) < 2:
        d = diffs[0]
        return Comparison(d, d, d, Verdict.INDISTINGUISHABLE, "none", 1, confidence)
    ci = t_interval(diffs, confidence)
    if seed_test == "sign":
        p = sign_test(diffs)
        verdict = _verdict(ci.mean, ci.mean, higher_is_better) if p < 1.0 - confidence else Verdict.INDISTINGUISHABLE
        return Comparison(
            ci.mean, ci.low, ci.high, verdict, f"sign test over {len(diffs)} seeds", len(diffs), confidence, p
        )
    return Comparison(
        ci.mean,
        ci.low,
        ci.high,
        _verdict(ci.low, ci.high, higher_is_better),
        f"paired t over {len(diffs)} seeds",
        len(diffs),
        confidence,
    )


def mean_of(measurements: Sequence[Measurement]) -> Measurement:
    """The mean over several tasks as one measurement (for a leaderboard's Avg column).

    Seeds: the per-seed mean over tasks, on the seeds every task has. Examples: every task's
    examples pooled with weights that give each task the same total weight, so the pooled
    weighted mean is the mean of the task means (the bootstrap then resamples the pool, an
    approximation to resampling each task on its own).
    """
    if not measurements:
        raise StatsError("mean_of needs at least one measurement")
    seeds = set(measurements[0].seeds)
    for m in measurements[1:]:
        seeds &= set(m.seeds)
    values = {s: float(np.mean([m.seeds[s] for m in measurements])) for s in sorted(seeds)}
    examples: dict[int, ExampleScores] = {}
    for s in sorted(seeds):
        parts = [m.examples.get(s) for m in measurements]
        if any(p is None for p in parts):
            continue
        ids: list[str] = []
        vals: list[float] = []
        ws: list[float] = []
        for t, p in enumerate(parts):
            assert p is not None
            w = np.ones(len(p.values)) if p.weights is None else np.asarray(p.weights, dtype=np.float64)
            ids += [f"{t}:{i}" for i in p.ids]
            vals += list(p.values)
            ws += list(w / w.sum())
        examples[s] = ExampleScores(tuple(ids), tuple(vals), tuple(ws))
    return Measurement(values, examples)


__all__ = [
    "Comparison",
    "ExampleScores",
    "Measurement",
    "SeedTest",
    "Verdict",
    "bootstrap_interval",
    "compare",
    "interval",
    "mean_of",
    "sign_test",
]
