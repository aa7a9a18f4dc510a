"""Accuracy recovery: a quantized model's score as a fraction of its full-precision model's.

The convention of llm-compressor's accuracy tests (``tests/lmeval/test_lmeval.py``): for each
higher-is-better task metric, ``recovery = quantized / base``, rounded to two decimals, must be at
least a floor (default 0.95, "retain >= 95% of the base model"). Here the base is the FP16 row of
the same model, task and metric (seeds averaged on both sides). A task the FP16 model scores 0 on
has no recovery (nothing to recover): it is reported, never counted as a pass or a failure.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import mean

from qigbench.results.metrics import MetricKind, is_known_metric, metric_info
from qigbench.results.row import ResultRow

DEFAULT_FLOOR = 0.95
FP_FORMATS = frozenset({"fp16", "bf16", "fp32", "w16a16", "fp"})


def is_full_precision(method: str, fmt: str) -> bool:
    """The unquantized model's rows: method ``fp16`` or a 16/32-bit float format."""
    return method.lower() == "fp16" or fmt.lower() in FP_FORMATS


def _is_fp(row: ResultRow) -> bool:
    return is_full_precision(row.method, row.format)


def recovers(metric: str) -> bool:
    """Recovery applies to accuracy metrics whose higher values are better (as llm-compressor's)."""
    if not is_known_metric(metric):
        return False
    info = metric_info(metric)
    return info.kind is MetricKind.ACCURACY and info.higher_is_better


def ratio(quantized: float, base: float) -> float | None:
    """``quantized / base`` rounded to two decimals (llm-compressor's rounding); None when base is 0."""
    return round(quantized / base, 2) if base > 0 else None


@dataclass(frozen=True)
class Recovery:
    model: str
    method: str
    format: str
    config_hash: str
    task: str
    metric: str
    quantized: float  # mean over seeds
    base: float  # the FP16 model's value (mean over its rows)
    recovery: float | None  # rounded ratio; None when the base is 0

    def passes(self, floor: float) -> bool | None:
        return None if self.recovery is None else self.recovery >= floor

    def label(self) -> str:
        return f"{self.model} / {self.method} / {self.format} [cfg {self.config_hash[:8]}] {self.task} {self.metric}"


def recoveries(rows: Iterable[ResultRow]) -> list[Recovery]:
    """One :class:`Recovery` per quantized (configuration, task, metric) that has an FP16 counterpart."""
    base: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    quant: dict[tuple[str, str, str, str, str, str], list[float]] = defaultdict(list)
    for r in rows:
        if not recovers(r.metric):
            continue
        if _is_fp(r):
            base[(r.model, r.task, r.metric)].append(r.value)
        else:
            quant[(r.model, r.method, r.format, r.config_hash, r.task, r.metric)].append(r.value)
    out = []
    for (model, method, fmt, chash, task, metric), values in sorted(quant.items()):
        ref = base.get((model, task, metric))
        if not ref:
            continue
        q, b = mean(values), mean(ref)
        out.append(Recovery(model, method, fmt, chash, task, metric, q, b, ratio(q, b)))
    return out


@dataclass(frozen=True)
class RecoveryCheck:
    floor: float
    failing: tuple[Recovery, ...]
    passing: tuple[Recovery, ...]
    undefined: tuple[Recovery, ...]  # FP16 scores 0: nothing to recover
    without_base: tuple[str, ...]  # models with quantized accuracy rows but no FP16 row

    def lines(self) -> list[str]:
        out = []
        for r in self.failing:
            out.append(
                f"RECOVERY  {r.label()}: {r.quantized:.4g} / FP16 {r.base:.4g} = {r.recovery:.2f} < {self.floor:.2f}"
            )
        for model in self.without_base:
            out.append(f"RECOVERY  {model}: quantized accuracy rows but no FP16 row to recover against")
        for r in self.undefined:
            out.append(f"no recovery {r.label()}: the FP16 model scores 0, nothing to recover")
        return out

    @property
    def fails(self) -> bool:
        return bool(self.failing or self.without_base)

    def summary(self) -> str:
        return (
            f"recovery >= {self.floor:.2f}: {len(self.passing)} pass, {len(self.failing)} below, "
            f"{len(self.undefined)} undefined (FP16 scores 0)"
            + (f", {len(self.without_base)} model(s) without an FP16 row" if self.without_base else "")
        )


def check_recovery(rows: Sequence[ResultRow], floor: float = DEFAULT_FLOOR) -> RecoveryCheck:
    """Every quantized accuracy against the floor (``qigbench check --min-recovery``)."""
    found = recoveries(rows)
    with_base = {r.model for r in found}
    quantized_models = {r.model for r in rows if recovers(r.metric) and not _is_fp(r)}
    return RecoveryCheck(
        floor,
        tuple(r for r in found if r.passes(floor) is False),
        tuple(r for r in found if r.passes(floor)),
        tuple(r for r in found if r.recovery is None),
        tuple(sorted(quantized_models - with_base)),
    )
