"""Regression checks of a results database against a committed baseline JSON.

A *regression* is a metric that moved in its bad direction (see the metric registry) by more
than ``tolerance * |baseline| + abs_tolerance``. An *ordering* is a declared expectation between
two methods, e.g. ``{"better": "qig", "worse": "mbq", "metric": "kl", "model": "tiny-qwen2vl",
"format": "W3A16"}``, checked as a paired comparison on the db's own rows (same seeds, same
examples; :func:`qigbench.stats.compare`) with a verdict:

* *holds*: the better method is ahead and the 95% interval of the difference excludes zero;
* *not distinguishable*: the interval covers zero (or the gap is inside the tolerance): reported
  separately, never a failure, so noise cannot make CI flaky;
* *broken* (fails): the reverse is significant, i.e. the whole interval says the "worse" method
  wins by more than the tolerance;
* with one seed and no per-example scores no test is possible: the means are compared with the
  tolerance as before (reported as "means only").

A baseline configuration absent from the database is an error, never a silent pass: CI that
stopped running a configuration must say so.

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
from qigbench.stats import DEFAULT_CONFIDENCE, Comparison, Measurement, compare, mean_of

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
    # failing: "regression" | "ordering" | "missing"; reported: "indistinct" | "holds" | "untested" |
    # "improved" | "new"
    kind: str
    message: str

    @property
    def fails(self) -> bool:
        return self.kind in ("regression", "ordering", "missing")


def seed_means(rows: Iterable[ResultRow]) -> dict[Key, float]:
    groups: dict[Key, list[float]] = defaultdict(list)
    for r in rows:
        groups[(r.model, r.method, r.format, r.config_hash, r.task, r.metric)].append(r.value)
    return {k: mean(v) for k, v in groups.items()}


def samples(rows: Iterable[ResultRow]) -> dict[Key, Measurement]:
    """Per key: the value of every seed and, where stored, its per-example scores."""
    seeds: dict[Key, dict[int, float]] = defaultdict(dict)
    examples: dict[Key, dict[int, Any]] = defaultdict(dict)
    for r in rows:
        key = (r.model, r.method, r.format, r.config_hash, r.task, r.metric)
        seeds[key][r.seed] = r.value
        if r.examples is not None:
            examples[key][r.seed] = r.examples
    return {k: Measurement(v, examples.get(k, {})) for k, v in seeds.items()}


def parse_ordering_spec(spec: str) -> tuple[str, str, str, str | None]:
    """``"qig>mbq:kl"`` or ``"qig>mbq:accuracy@chartqa"`` -> (better, worse, metric, task)."""
    found = re.fullmatch(r"\s*([^>:@\s]+)\s*>\s*([^>:@\s]+)\s*:\s*([^>:@\s]+)\s*(?:@\s*(\S+))?\s*", spec)
    if not found:
        raise ResultsError(f"ordering {spec!r} not understood; write BETTER>WORSE:METRIC[@TASK], e.g. qig>mbq:kl")
    metric_info(found[3])
    return found[1], found[2], found[3], found[4]


def _allowed(reference: float, tolerance: float, abs_tolerance: float) -> float:
    return tolerance * abs(reference) + abs_tolerance


def _method_sample(found: dict[Key, Measurement], o: Ordering, method: str) -> Measurement | None:
    """The method's measurement for the ordering (the mean over tasks when ``o.task`` is None)."""
    picked = [
        v
        for (m, me, f, _, t, mt), v in sorted(found.items())
        if m == o.model and me == method and f == o.format and mt == o.metric and (o.task is None or t == o.task)
    ]
    if not picked:
        return None
    return picked[0] if len(picked) == 1 else mean_of(picked)


def compare_ordering(
    found: dict[Key, Measurement], o: Ordering, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[Measurement, Measurement, Comparison] | None:
    """Paired comparison of ``o.better`` against ``o.worse``; ``None`` if one has no rows."""
    b, w = _method_sample(found, o, o.better), _method_sample(found, o, o.worse)
    if b is None or w is None:
        return None
    return b, w, compare(b, w, metric_info(o.metric).higher_is_better, confidence)


def ordering_holds(
    found: dict[Key, Measurement],
    o: Ordering,
    tolerance: float,
    abs_tolerance: float,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Finding:
    """The ordering's verdict (see the module docstring); failing kinds: ``ordering``, ``missing``."""
    got = compare_ordering(found, o, confidence)
    if got is None:
        absent = o.better if _method_sample(found, o, o.better) is None else o.worse
        return Finding("missing", f"MISSING   ordering {o.label()}: no {o.metric} rows for {absent}")
    b, w, c = got
    slack = _allowed(w.mean, tolerance, abs_tolerance)
    hib = metric_info(o.metric).higher_is_better
    # the difference in the ordering's favour: > 0 means the "better" method is ahead
    gain, gain_low, gain_high = (c.diff, c.low, c.high) if hib else (-c.diff, -c.high, -c.low)
    pct = f"{confidence:.0%}"
    detail = (
        f"{o.better} {b.mean:.6g} vs {o.worse} {w.mean:.6g}, gain {gain:+.3g} "
        f"[{pct}: {gain_low:+.3g}, {gain_high:+.3g}] by {c.test}"
    )
    if not c.tested:
        if gain < -slack:
            return Finding(
                "ordering", f"ORDERING  {o.label()}: {detail}; means only, worse beyond tolerance {slack:.3g}"
            )
        return Finding("untested", f"means     {o.label()}: {detail} (one seed, no per-example scores: no test)")
    if gain_high < -slack:
        return Finding(
            "ordering",
            f"ORDERING  {o.label()}: {detail}; {o.worse} is significantly better (beyond tolerance {slack:.3g})",
        )
    if gain_low > 0:
        return Finding("holds", f"holds     {o.label()}: {detail}")
    return Finding("indistinct", f"not distinguishable  {o.label()}: {detail}")


def check(rows: Sequence[ResultRow], baseline: Baseline, tolerance: float, abs_tolerance: float = 0.0) -> list[Finding]:
    """Compare ``rows`` with ``baseline``; failing findings first."""
    values = seed_means(rows)
    found_samples = samples(rows)
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
        findings.append(ordering_holds(found_samples, o, tolerance, abs_tolerance))
    return sorted(findings, key=lambda f: (not f.fails, _REPORT_ORDER.get(f.kind, len(_REPORT_ORDER))))


#: Non-failing findings are listed grouped: undecided orderings first, "new" rows last.
_REPORT_ORDER = {"indistinct": 0, "untested": 1, "holds": 2, "improved": 3, "new": 4}


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
    found_samples = samples(rows)
    verdicts = [ordering_holds(found_samples, o, tolerance or 0.0, abs_tolerance or 0.0) for o in expanded]
    broken = [f.message for f in verdicts if f.fails]
    if broken:
        raise ResultsError(
            "refusing to write a baseline whose orderings already fail:\n  "
            + "\n  ".join(broken)
            + "\ndrop those orderings (edit the baseline JSON) or fix the results first"
        )
    meta = {"created": datetime.now(UTC).isoformat(timespec="seconds"), **(meta or {})}
    return Baseline(entries, expanded, tolerance, abs_tolerance, meta)
