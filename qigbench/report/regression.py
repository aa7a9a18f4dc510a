"""Regression checks of a results database against a committed baseline JSON.

A *regression* is a metric that moved in its bad direction (see the metric registry) by more
than ``tolerance * |baseline| + abs_tolerance``. An *ordering* is a declared expectation between
two methods, e.g. ``{"better": "qig", "worse": "mbq", "metric": "kl", "model": "tiny-qwen2vl",
"format": "W3A16"}``: QIG's KL must not exceed MBQ's by more than the same tolerance. A baseline
configuration absent from the database is an error, never a silent pass: CI that stopped running
a configuration must say so.

Baseline file (``version`` 1)::

    {"version": 1, "created": "...", "source_db": "...", "git_commit": "...",
     "tolerance": 0.02, "abs_tolerance": 0.0,
     "entries": [{"model", "method", "format", "config_hash", "task", "metric", "value"}, ...],
     "orderings": [{"better", "worse", "metric", "model", "format", "task"?}, ...]}

Values are means over seeds, keyed by configuration hash: a changed method config is a new
configuration, and the check tells you to re-baseline.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from statistics import mean
from typing import Any

from qigbench.results.errors import ResultsError
from qigbench.results.metrics import metric_info
from qigbench.results.row import ResultRow

BASELINE_VERSION = 1
DEFAULT_TOLERANCE = 0.02

Key = tuple[str, str, str, str, str, str]  # model, method, format, config_hash, task, metric


@dataclass(frozen=True)
class Entry:
    model: str
    method: str
    format: str
    config_hash: str
    task: str
    metric: str
    value: float

    @property
    def key(self) -> Key:
        return (self.model, self.method, self.format, self.config_hash, self.task, self.metric)

    def label(self) -> str:
        return f"{self.model} / {self.method} / {self.format} [cfg {self.config_hash[:8]}] {self.task} {self.metric}"


@dataclass(frozen=True)
class Ordering:
    better: str
    worse: str
    metric: str
    model: str
    format: str
    task: str | None = None  # None: mean over every task that reports the metric

    def label(self) -> str:
        on = f"{self.metric}" + (f" on {self.task}" if self.task else " (mean over tasks)")
        return f"{self.model} / {self.format}: {self.better} should beat {self.worse} on {on}"


@dataclass
class Baseline:
    entries: list[Entry]
    orderings: list[Ordering] = field(default_factory=list)
    tolerance: float | None = None
    abs_tolerance: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> Baseline:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ResultsError(
                f"baseline {path} not found; write one with: qigbench check --db DB --baseline {path} --write-baseline"
            ) from None
        except json.JSONDecodeError as err:
            raise ResultsError(f"baseline {path} is not valid JSON ({err}); fix it or re-write it") from err
        if not isinstance(data, dict) or data.get("version") != BASELINE_VERSION:
            raise ResultsError(f'baseline {path}: expected a JSON object with "version": {BASELINE_VERSION}')
        try:
            entries = [Entry(**e) for e in data.get("entries", [])]
            orderings = [Ordering(**o) for o in data.get("orderings", [])]
        except TypeError as err:
            raise ResultsError(
                f"baseline {path}: malformed entry or ordering ({err}); see qigbench.report.regression"
            ) from err
        meta = {k: v for k, v in data.items() if k not in ("entries", "orderings", "tolerance", "abs_tolerance")}
        return cls(entries, orderings, data.get("tolerance"), data.get("abs_tolerance"), meta)

    def dump(self, path: str | Path) -> None:
        data = {
            **self.meta,
            "version": BASELINE_VERSION,
            "tolerance": self.tolerance,
            "abs_tolerance": self.abs_tolerance,
            "orderings": [{k: v for k, v in asdict(o).items() if v is not None} for o in self.orderings],
            "entries": [asdict(e) for e in sorted(self.entries, key=lambda e: e.key)],
        }
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class Finding:
    kind: str  # "regression" | "ordering" | "missing" | "improved" | "new"
    message: str

    @property
    def fails(self) -> bool:
        return self.kind in ("regression", "ordering", "missing")


def seed_means(rows: Iterable[ResultRow]) -> dict[Key, float]:
    groups: dict[Key, list[float]] = defaultdict(list)
    for r in rows:
        groups[(r.model, r.method, r.format, r.config_hash, r.task, r.metric)].append(r.value)
    return {k: mean(v) for k, v in groups.items()}


def parse_ordering_spec(spec: str) -> tuple[str, str, str, str | None]:
    """``"qig>mbq:kl"`` or ``"qig>mbq:accuracy@chartqa"`` -> (better, worse, metric, task)."""
    found = re.fullmatch(r"\s*([^>:@\s]+)\s*>\s*([^>:@\s]+)\s*:\s*([^>:@\s]+)\s*(?:@\s*(\S+))?\s*", spec)
    if not found:
        raise ResultsError(f"ordering {spec!r} not understood; write BETTER>WORSE:METRIC[@TASK], e.g. qig>mbq:kl")
    metric_info(found[3])
    return found[1], found[2], found[3], found[4]


def _allowed(reference: float, tolerance: float, abs_tolerance: float) -> float:
    return tolerance * abs(reference) + abs_tolerance


def _method_value(values: dict[Key, float], o: Ordering, method: str) -> float | None:
    picked = [
        v
        for (m, me, f, _, t, mt), v in values.items()
        if m == o.model and me == method and f == o.format and mt == o.metric and (o.task is None or t == o.task)
    ]
    return mean(picked) if picked else None


def ordering_holds(values: dict[Key, float], o: Ordering, tolerance: float, abs_tolerance: float) -> Finding | None:
    """``None`` if the ordering holds, else a failing finding (broken or not measurable)."""
    b, w = _method_value(values, o, o.better), _method_value(values, o, o.worse)
    if b is None or w is None:
        absent = o.better if b is None else o.worse
        return Finding("missing", f"MISSING   ordering {o.label()}: no {o.metric} rows for {absent}")
    slack = _allowed(w, tolerance, abs_tolerance)
    hib = metric_info(o.metric).higher_is_better
    ok = b >= w - slack if hib else b <= w + slack
    if ok:
        return None
    sign = ">=" if hib else "<="
    return Finding(
        "ordering",
        f"ORDERING  {o.label()}: {o.better} {b:.6g} vs {o.worse} {w:.6g} "
        f"(needs {sign} {w - slack if hib else w + slack:.6g} with tolerance)",
    )


def check(rows: Sequence[ResultRow], baseline: Baseline, tolerance: float, abs_tolerance: float = 0.0) -> list[Finding]:
    """Compare ``rows`` with ``baseline``; failing findings first."""
    values = seed_means(rows)
    hashes: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for m, me, f, h, _, _ in values:
        hashes[(m, me, f)].add(h)
    findings: list[Finding] = []
    for e in baseline.entries:
        cur = values.get(e.key)
        if cur is None:
            present = sorted(hashes.get((e.model, e.method, e.format), set()) - {e.config_hash})
            hint = (
                (
                    f"; the db has config hashes {', '.join(present)} for it: if the method config changed on "
                    "purpose, re-write the baseline with --write-baseline"
                )
                if present
                else "; did the suite run it?"
            )
            findings.append(Finding("missing", f"MISSING   {e.label()}: baseline {e.value:.6g}, not in the db{hint}"))
            continue
        hib = metric_info(e.metric).higher_is_better
        gain = (cur - e.value) if hib else (e.value - cur)
        allowed = _allowed(e.value, tolerance, abs_tolerance)
        rel = f", {(cur - e.value) / abs(e.value):+.1%}" if e.value else ""
        change = f"{e.value:.6g} -> {cur:.6g} ({cur - e.value:+.6g}{rel}; allowed {allowed:.3g}"
        direction = "higher" if hib else "lower"
        if gain < -allowed:
            findings.append(Finding("regression", f"REGRESSED {e.label()}: {change}, {direction} is better)"))
        elif gain > allowed:
            findings.append(Finding("improved", f"improved  {e.label()}: {change}); consider re-baselining"))
    known = {e.key for e in baseline.entries}
    for key in sorted(set(values) - known):
        findings.append(Finding("new", f"new       {' / '.join(key)}: not in the baseline"))
    for o in baseline.orderings:
        found = ordering_holds(values, o, tolerance, abs_tolerance)
        if found is not None:
            findings.append(found)
    return sorted(findings, key=lambda f: not f.fails)


def baseline_from_rows(
    rows: Sequence[ResultRow],
    orderings: Sequence[Ordering] = (),
    specs: Sequence[str] = (),
    tolerance: float | None = DEFAULT_TOLERANCE,
    abs_tolerance: float | None = 0.0,
    meta: dict[str, Any] | None = None,
) -> Baseline:
    """Baseline of ``rows``; ``specs`` (``qig>mbq:kl``) expand to every model and format having both methods.

    Orderings that do not hold in ``rows`` are refused: a baseline that fails at once is a mistake.
    """
    if not rows:
        raise ResultsError("no rows to baseline; run the suites into the --db first")
    values = seed_means(rows)
    for key in values:
        metric_info(key[5])  # unknown metric: error naming register_metric
    entries = [Entry(*k, value=v) for k, v in values.items()]
    expanded = list(orderings)
    for spec in specs:
        better, worse, metric, task = parse_ordering_spec(spec)
        pairs = {(m, f) for m, me, f, _, t, mt in values if me == better and mt == metric and task in (None, t)}
        pairs &= {(m, f) for m, me, f, _, t, mt in values if me == worse and mt == metric and task in (None, t)}
        if not pairs:
            raise ResultsError(
                f"ordering {spec!r}: no model/format in the db has {metric} for both {better} and {worse}"
            )
        expanded += [Ordering(better, worse, metric, m, f, task) for m, f in sorted(pairs)]
    expanded = list(dict.fromkeys(expanded))
    broken = [f.message for o in expanded if (f := ordering_holds(values, o, tolerance or 0.0, abs_tolerance or 0.0))]
    if broken:
        raise ResultsError(
            "refusing to write a baseline whose orderings already fail:\n  "
            + "\n  ".join(broken)
            + "\ndrop those orderings (edit the baseline JSON) or fix the results first"
        )
    meta = {"created": datetime.now(UTC).isoformat(timespec="seconds"), **(meta or {})}
    return Baseline(entries, expanded, tolerance, abs_tolerance, meta)
