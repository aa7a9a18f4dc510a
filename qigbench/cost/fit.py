"""Least-squares lines through measurements at several depths, with the checks a prediction needs.

MBQ's model-level gradient pass (its ``prepare``) runs the whole model, so its time is a fixed part
(embedding, vision tower, lm_head) plus a part per decoder block. A line through two noisy timings
(k and k - 1 blocks) can come out with any slope, negative included; clamping that to 0 is how a
whole-model prediction ended up 32% low. Here the line is fitted on >= 3 depths by least squares,
and nothing is clamped: a negative slope is an error that names the fix, a fit that is implausible
(a negative fixed part, a large residual) or unchecked (two depths: an exact line, nothing to check
it against) carries a warning that the printed prediction shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from qigbench.cost.errors import CostModelError

#: a fit whose RMS residual exceeds this share of the mean value is flagged
RESIDUAL_WARNING = 0.10


@dataclass(frozen=True)
class LineFit:
    """``value(depth) = fixed + slope * depth``, fitted on ``depths`` / ``values``."""

    what: str
    fixed: float
    slope: float
    depths: tuple[int, ...]
    values: tuple[float, ...]
    residual_rms: float = 0.0
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def at(self, depth: float) -> float:
        return self.fixed + self.slope * depth

    @property
    def relative_residual(self) -> float:
        mean = sum(self.values) / len(self.values) if self.values else 0.0
        return self.residual_rms / abs(mean) if mean else 0.0


def fit_line(
    depths: Sequence[int], values: Sequence[float], what: str, unit: str = "s",
    negative: Literal["error", "warn"] = "error",
) -> LineFit:  # fmt: skip
    """Least-squares line of ``values`` over ``depths``.

    Raises :class:`CostModelError` on a negative slope (a part that shrinks as blocks are added
    is noise, not a cost model; ``negative="warn"`` keeps it, with a warning: a peak-memory line,
    whose per-block part can be below the allocator's noise) or on fewer than two distinct depths.
    Warns (in ``warnings``) when only two depths were measured, when the fixed part is negative,
    or when the RMS residual is over ``RESIDUAL_WARNING`` of the mean. Nothing is clamped.
    """
    if len(depths) != len(values):
        raise CostModelError(f"{what}: {len(depths)} depths but {len(values)} values")
    distinct = sorted(set(depths))
    points = ", ".join(f"{d} blocks: {v:.4g} {unit}" for d, v in zip(depths, values, strict=True))
    if len(distinct) < 2:
        raise CostModelError(
            f"{what}: measured at {len(distinct)} depth ({points}); a per-block part needs >= 2 depths and "
            "is checked with >= 3 (build at least 3 blocks: --blocks 3)"
        )
    n = len(depths)
    mean_d = sum(depths) / n
    mean_v = sum(values) / n
    sxx = sum((d - mean_d) ** 2 for d in depths)
    sxy = sum((d - mean_d) * (v - mean_v) for d, v in zip(depths, values, strict=True))
    slope = sxy / sxx
    fixed = mean_v - slope * mean_d
    residuals = [v - (fixed + slope * d) for d, v in zip(depths, values, strict=True)]
    rms = (sum(r * r for r in residuals) / n) ** 0.5
    warnings = []
    if slope < 0 and negative == "warn":
        warnings.append(f"{what}: the least-squares slope is negative ({slope:.4g} {unit} per block; {points}); "
                        "kept as fitted (not clamped): the per-block part is below the measurement's noise")
    elif slope < 0:
        raise CostModelError(
            f"{what}: the least-squares slope over depths is negative ({slope:.4g} {unit} per block; {points}): "
            "the timings are noisier than the per-block part. Measure more depths (--blocks 4 or more), more "
            "samples, or on a quieter machine (on a shared CPU, --clock cpu)"
        )
    if len(distinct) == 2:
        warnings.append(f"{what}: a line through 2 depths ({points}) fits exactly, so nothing checks it; "
                        "measure >= 3 depths (--blocks 3)")
    if fixed < 0:
        warnings.append(f"{what}: the fitted fixed part is negative ({fixed:.4g} {unit}; {points}); kept as "
                        "fitted, so the prediction at the real depth may be low")
    fit = LineFit(what, fixed, slope, tuple(depths), tuple(values), rms)
    if fit.relative_residual > RESIDUAL_WARNING:
        warnings.append(f"{what}: the points scatter {fit.relative_residual:.0%} (RMS) around the fitted line "
                        f"({points}): noisy timings")
    return LineFit(what, fixed, slope, tuple(depths), tuple(values), rms, tuple(warnings))
