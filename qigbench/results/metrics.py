"""Metric registry: which direction is "better" for each metric, and what kind it is.

Reports rank methods and ``qigbench check`` decides what a *regression* is, so both need to
know that accuracy should go up while KL divergence should go down. Guessing the direction of
an unknown metric would silently invert a regression check, so unknown metrics are an error
that names :func:`register_metric` as the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from qigbench.results.errors import ResultsError


class MetricKind(StrEnum):
    """Which report table a metric belongs to."""

    ACCURACY = "accuracy"  # task scores averaged in the leaderboard (Table 2)
    FIDELITY = "fidelity"  # distance of the quantized model from fp (kl, flip rate, ppl, block error)


@dataclass(frozen=True)
class MetricInfo:
    name: str
    higher_is_better: bool
    kind: MetricKind
    label: str


_REGISTRY: dict[str, MetricInfo] = {}


def register_metric(
    name: str, *, higher_is_better: bool, kind: MetricKind | str, label: str | None = None
) -> MetricInfo:
    """Declare a metric (idempotent for identical declarations, an error for conflicting ones)."""
    info = MetricInfo(name, higher_is_better, MetricKind(kind), label or name)
    old = _REGISTRY.get(name)
    if old is not None and old != info:
        raise ResultsError(f"metric {name!r} is already registered as {old}; pick another name for {info}")
    _REGISTRY[name] = info
    return info


def metric_info(name: str) -> MetricInfo:
    """Look a metric up; unknown names raise, naming the known ones and the fix."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ResultsError(
            f"unknown metric {name!r}: its direction (higher or lower is better) is not known. "
            f"Known metrics: {known}. Register it with "
            f"qigbench.results.register_metric({name!r}, higher_is_better=..., kind='accuracy'|'fidelity')"
        ) from None


def is_known_metric(name: str) -> bool:
    return name in _REGISTRY


def known_metrics() -> dict[str, MetricInfo]:
    return dict(_REGISTRY)


def is_better(metric: str, a: float, b: float) -> bool:
    """``a`` strictly better than ``b`` under the metric's direction."""
    return a > b if metric_info(metric).higher_is_better else a < b


# Task scores. The order here is the priority when a task reports several accuracy metrics:
# the leaderboard shows the first one present.
for _name, _label in [
    ("accuracy", "Acc"),
    ("acc", "Acc"),
    ("relaxed_accuracy", "Relaxed acc"),
    ("anls", "ANLS"),
    ("exact_match", "EM"),
    ("acc_norm", "Acc (norm)"),
]:
    register_metric(_name, higher_is_better=True, kind=MetricKind.ACCURACY, label=_label)

# Fidelity to the fp model: lower is better.
register_metric("kl", higher_is_better=False, kind=MetricKind.FIDELITY, label="KL")
register_metric("flip_rate", higher_is_better=False, kind=MetricKind.FIDELITY, label="Flip rate")
register_metric("block_error", higher_is_better=False, kind=MetricKind.FIDELITY, label="Block error")
register_metric("ppl", higher_is_better=False, kind=MetricKind.FIDELITY, label="PPL")
register_metric("perplexity", higher_is_better=False, kind=MetricKind.FIDELITY, label="PPL")

ACCURACY_PRIORITY: tuple[str, ...] = tuple(n for n, i in _REGISTRY.items() if i.kind is MetricKind.ACCURACY)
