"""Report tables as plain data, in the paper's layout, built from stored rows.

Tables are format-free (:class:`Table` of :class:`Cell`); :mod:`qigbench.report.render` turns
them into Markdown, HTML, CSV and LaTeX, so every output shows the same numbers.

* leaderboard (Table 2): rows model x method, column groups = formats, columns = tasks + average
  + recovery (Avg / FP16 Avg, :mod:`qigbench.report.recovery`), the paper's average as a reference
  column where the model is one of the paper's;
* fidelity: KL, flip rate, block error, PPL per format;
* calibration efficiency (Table 6): seconds, peak memory, time relative to MBQ.

Seeds are averaged and every number carries its 95% interval (:mod:`qigbench.stats`: t over
seeds, or a bootstrap over examples when there is one seed), clipped to the metric's range (an
accuracy interval never leaves [0, 100%], a KL one never goes below 0: with three seeds a t
interval easily would); best / second-best marking treats
entries that a paired test cannot tell apart as tied. An FP16 row (method ``fp16`` or a 16-bit
format) is repeated in every format group, as in the paper.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from statistics import mean

from qigbench.report.paper import paper_average, paper_gpu_hours, paper_model
from qigbench.report.recovery import DEFAULT_FLOOR, ratio
from qigbench.report.recovery import FP_FORMATS as FP_FORMATS  # the report's one FP16 test lives there
from qigbench.report.recovery import is_full_precision as is_full_precision
from qigbench.results.metrics import MetricKind, is_known_metric, known_metrics, metric_info
from qigbench.results.row import ResultRow
from qigbench.stats import Interval, Measurement, Verdict, compare, interval, mean_of

METHOD_ORDER = ("fp16", "rtn", "gptq", "awq", "sq", "smoothquant", "mbq", "qig", "qig+gptq", "loo", "qvlm", "tlq")
PAPER_FORMATS = ("W3A16", "W4A8")
FP_LABEL = "FP16"


#: Caption sentence shared by the ranked tables.
TIES = (
    "± = 95% interval (t over seeds); [low, high] = 95% interval where it is not symmetric (bootstrap "
    "over examples with one seed, or clipped to the metric's range); entries a paired test "
    "(same seeds / examples) cannot tell apart at 95% share a mark"
)


@dataclass(frozen=True)
class Cell:
    value: float | None = None  # machine value (CSV); None = missing
    text: str = "—"  # display text
    rank: int | None = None  # 1 = best, 2 = second best in its column and model (ties share it)
    low: float | None = None  # 95% interval of value (CSV), None when unknown
    high: float | None = None
    sample: Measurement | None = field(default=None, compare=False, repr=False)  # for paired tie tests


@dataclass
class Table:
    name: str  # file stem
    title: str
    caption: str
    row_header: tuple[str, ...]
    groups: list[tuple[str, list[str]]]
    rows: list[tuple[tuple[str, ...], list[Cell]]] = field(default_factory=list)

    @property
    def columns(self) -> list[tuple[str, str]]:
        return [(g, c) for g, cols in self.groups for c in cols]


@dataclass(frozen=True)
class Agg:
    """Rows of one (configuration, task, metric) averaged over seeds."""

    model: str
    method: str  # display label (method, plus config hash when a method has several configs)
    format: str
    fp: bool
    task: str
    metric: str
    value: float
    seeds: int
    calib_seconds: float | None
    peak_memory_bytes: int | None
    sample: Measurement | None = field(default=None, compare=False, repr=False)  # per seed / example
    interval: Interval | None = None  # 95% interval of value


#: Where a metric's values can lie (an interval is clipped to it). Accuracy metrics are fractions
#: (percent when stored as such: see :func:`metric_range`).
RANGES: dict[str, tuple[float, float]] = {
    "kl": (0.0, math.inf),
    "flip_rate": (0.0, 1.0),
    "block_error": (0.0, math.inf),
    "ppl": (1.0, math.inf),
    "perplexity": (1.0, math.inf),
}
RECOVERY = "Recovery"


def metric_range(metric: str, values: Iterable[float] = ()) -> tuple[float, float]:
    """The range of ``metric``: RANGES, else [0, 1] for accuracy stored as fractions ([0, 100] if any
    stored value exceeds 1), else unbounded."""
    if metric in RANGES:
        return RANGES[metric]
    if is_known_metric(metric) and metric_info(metric).kind is MetricKind.ACCURACY:
        return (0.0, 100.0) if any(v > 1.0 for v in values) else (0.0, 1.0)
    return (-math.inf, math.inf)


CLIPPED = " (clipped to the metric's range)"


def bounded(ci: Interval | None, lo: float, hi: float) -> Interval | None:
    """``ci`` clipped to ``[lo, hi]`` (its mean untouched; its method says it was clipped)."""
    if ci is None or (ci.low >= lo and ci.high <= hi):
        return ci
    low, high = min(max(ci.low, lo), hi), max(min(ci.high, hi), lo)
    return Interval(ci.mean, low, high, ci.n, ci.method.removesuffix(CLIPPED) + CLIPPED, ci.confidence)


def method_sort_key(method: str) -> tuple[int, str]:
    base = method.split("[")[0].strip().lower()  # a variant (``qig[steps=4]``) sorts with its method
    return (METHOD_ORDER.index(base) if base in METHOD_ORDER else len(METHOD_ORDER), method)


def format_sort_key(fmt: str) -> tuple[int, int, int, str]:
    if fmt.upper() in PAPER_FORMATS:
        return (PAPER_FORMATS.index(fmt.upper()), 0, 0, fmt)
    found = re.match(r"[wW](\d+)[aA](\d+)", fmt)
    w, a = (int(found[1]), int(found[2])) if found else (99, 99)
    return (len(PAPER_FORMATS), w, a, fmt)


def aggregate(rows: Iterable[ResultRow]) -> list[Agg]:
    """Average seeds; label methods that have several config hashes within one model and format."""
    rows = list(rows)
    hashes: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for r in rows:
        hashes[(r.model, r.method, r.format)].add(r.config_hash)
    calib: dict[tuple[str, str, str, str, int], list[ResultRow]] = defaultdict(list)
    groups: dict[tuple[str, str, str, str, str, str], list[ResultRow]] = defaultdict(list)
    for r in rows:
        groups[(r.model, r.method, r.format, r.config_hash, r.task, r.metric)].append(r)
        calib[(r.model, r.method, r.format, r.config_hash, r.seed)].append(r)
    out = []
    for (model, method, fmt, chash, task, metric), members in sorted(groups.items()):
        label = f"{method} [{chash[:6]}]" if len(hashes[(model, method, fmt)]) > 1 else method
        per_seed = [calib[(model, method, fmt, chash, r.seed)] for r in members]
        secs = [max(s) for s in ([x.calib_seconds for x in c if x.calib_seconds is not None] for c in per_seed) if s]
        mems = [x.peak_memory_bytes for c in per_seed for x in c if x.peak_memory_bytes is not None]
        sample = Measurement(
            {r.seed: r.value for r in members}, {r.seed: r.examples for r in members if r.examples is not None}
        )
        lo, hi = metric_range(metric, (r.value for r in members))
        out.append(
            Agg(
                model,
                label,
                fmt,
                is_full_precision(method, fmt),
                task,
                metric,
                mean(r.value for r in members),
                len(members),
                mean(secs) if secs else None,
                max(mems) if mems else None,
                sample,
                bounded(interval(sample), lo, hi),
            )
        )
    return out


def unknown_metrics(aggs: Sequence[Agg]) -> list[str]:
    return sorted({a.metric for a in aggs if not is_known_metric(a.metric)})


def _of_kind(aggs: Sequence[Agg], kind: MetricKind) -> list[Agg]:
    return [a for a in aggs if is_known_metric(a.metric) and metric_info(a.metric).kind is kind]


def _quantized_formats(aggs: Sequence[Agg]) -> list[str]:
    fmts = {a.format for a in aggs if not a.fp} or {a.format for a in aggs}
    return sorted(fmts, key=format_sort_key)


def _row_keys(aggs: Sequence[Agg]) -> list[tuple[str, str]]:
    """(model, method label) in display order, the FP16 row first."""
    keys = {(a.model, FP_LABEL if a.fp else a.method) for a in aggs}
    return sorted(keys, key=lambda k: (k[0], (-1, "") if k[1] == FP_LABEL else method_sort_key(k[1])))


def tied(a: Cell, b: Cell, higher_is_better: bool) -> bool:
    """Equal values, or a paired test on the two cells' samples that finds no difference.

    Without the data for a test (one seed, no per-example scores) only equal values tie.
    """
    if a.value == b.value:
        return True
    if a.sample is None or b.sample is None:
        return False
    found = compare(a.sample, b.sample, higher_is_better)
    return found.tested and found.verdict is Verdict.INDISTINGUISHABLE


def _rank(table: Table, higher_is_better: Sequence[bool | None]) -> None:
    """Mark best / second-best quantized method per model and column.

    Rank 1 goes to the best mean and the entries after it (in order of mean) that are tied with
    it (:func:`tied`), up to the first that is not; rank 2 likewise from there. Pairwise tests are
    not transitive, so stopping at the first distinguishable entry keeps the marks monotone in
    the mean. A column where every entry ties with the best is left unmarked.
    """
    by_model: dict[str, list[int]] = defaultdict(list)
    for i, (head, _) in enumerate(table.rows):
        if head[1] != FP_LABEL:
            by_model[head[0]].append(i)
    for col, hib in enumerate(higher_is_better):
        if hib is None:
            continue
        for idxs in by_model.values():
            present = [i for i in idxs if table.rows[i][1][col].value is not None]
            if len({table.rows[i][1][col].value for i in present}) < 2:
                continue
            order = sorted(present, key=lambda i: table.rows[i][1][col].value or 0.0, reverse=hib)
            ranks: dict[int, int] = {}
            for rank in (1, 2):
                rest = [i for i in order if i not in ranks]
                if not rest:
                    break
                lead = table.rows[rest[0]][1][col]
                for i in rest:  # a prefix of the order: a mark never skips a better mean
                    if not tied(table.rows[i][1][col], lead, hib):
                        break
                    ranks[i] = rank
                if rank == 1 and len(ranks) == len(order):
                    ranks = {}
                    break
            for i, rank in ranks.items():
                cell = table.rows[i][1][col]
                table.rows[i][1][col] = replace(cell, rank=rank)


def leaderboard(aggs: Sequence[Agg]) -> Table:
    acc = _of_kind(aggs, MetricKind.ACCURACY)
    order = list(known_metrics())
    metrics_of: dict[str, set[str]] = defaultdict(set)
    for a in acc:
        metrics_of[a.task].add(a.metric)
    primary = {t: min(ms, key=order.index) for t, ms in metrics_of.items()}
    acc = [a for a in acc if primary[a.task] == a.metric]
    scale = 100.0 if acc and max(abs(a.value) for a in acc) <= 1.0 else 1.0
    fmts = _quantized_formats(acc)
    with_paper = any(paper_model(a.model) for a in acc)
    value: dict[tuple[str, str, str, str], Agg] = {}
    for a in acc:
        for fmt in fmts if a.fp else [a.format]:
            value[(a.model, FP_LABEL if a.fp else a.method, fmt, a.task)] = a
    groups = []
    for fmt in fmts:
        tasks = sorted({t for (_, _, f, t) in value if f == fmt})
        groups.append((fmt, [*tasks, "Avg", RECOVERY, *(["Paper avg"] if with_paper else [])]))
    unit = "accuracy in % (stored fractions x 100)" if scale == 100.0 else "accuracy as stored"
    table = Table(
        "leaderboard",
        "Leaderboard (Table 2 layout)",
        f"Rows: model x method; column groups: formats; {unit}; Avg over the group's tasks (— if one is missing); "
        f"{RECOVERY} = Avg / the FP16 row's Avg (llm-compressor's accuracy recovery, rounded to 2 decimals; "
        f"'< {DEFAULT_FLOOR:.2f}' marks one below the floor that `qigbench check --min-recovery` enforces per task); "
        f"bold = best, underlined = second best quantized method per model; {TIES}."
        + (" Paper avg: the paper's Table 2." if with_paper else ""),
        ("Model", "Method"),
        groups,
    )
    fp_avg: dict[tuple[str, str], float] = {}
    for model, method in _row_keys(acc):
        cells: list[Cell] = []
        for fmt, cols in groups:
            tasks = [c for c in cols if c not in ("Avg", RECOVERY, "Paper avg")]
            found = [value.get((model, method, fmt, t)) for t in tasks]
            cells += [_stat(a, 2, scale) for a in found]
            present = [a for a in found if a is not None]
            avg = _mean_cell(present, 2, scale) if present and len(present) == len(found) else Cell()
            cells.append(avg)
            if method == FP_LABEL and avg.value is not None:
                fp_avg[(model, fmt)] = avg.value
            cells.append(_recovery_cell(avg.value, fp_avg.get((model, fmt)), method == FP_LABEL))
            if with_paper:
                ref = paper_average(model, "fp16" if method == FP_LABEL else method, fmt, method == FP_LABEL)
                cells.append(_num(ref, 2))
        if any(c.value is not None for c in cells):
            table.rows.append(((model, method), cells))
    hib = [None if c in ("Paper avg", RECOVERY) else True for _, c in table.columns]
    _rank(table, hib)
    return table


def _recovery_cell(avg: float | None, fp: float | None, is_fp: bool) -> Cell:
    if is_fp:
        return Cell(1.0, "ref") if avg is not None else Cell()
    if avg is None or fp is None:
        return Cell()
    found = ratio(avg, fp)
    if found is None:
        return Cell(None, "n/a (FP16 0)")
    return Cell(found, f"{found:.2f}" + (f" (< {DEFAULT_FLOOR:.2f})" if found < DEFAULT_FLOOR else ""))


def fidelity(aggs: Sequence[Agg]) -> Table:
    fid = [a for a in _of_kind(aggs, MetricKind.FIDELITY) if not a.fp]
    fmts = _quantized_formats(fid)
    tasks_of: dict[str, set[str]] = defaultdict(set)
    for a in fid:
        tasks_of[a.metric].add(a.task)

    def label(metric: str, task: str) -> str:
        name = metric_info(metric).label
        return name if len(tasks_of[metric]) == 1 else f"{name} ({task})"

    order = list(known_metrics())
    value = {(a.model, a.method, a.format, label(a.metric, a.task)): a for a in fid}
    groups, hib = [], []
    for fmt in fmts:
        pairs = sorted({(a.metric, a.task) for a in fid if a.format == fmt}, key=lambda p: (order.index(p[0]), p[1]))
        groups.append((fmt, [label(m, t) for m, t in pairs]))
        hib += [metric_info(m).higher_is_better for m, _ in pairs]
    table = Table(
        "fidelity",
        "Fidelity to the FP16 model",
        "Lower is better for every column (KL divergence, top-1 flip rate, block output error, perplexity); "
        f"bold = best, underlined = second best per model; {TIES}.",
        ("Model", "Method"),
        groups,
    )
    for model, method in _row_keys(fid):
        cells = [_stat(value.get((model, method, fmt, c)), None) for fmt, cols in groups for c in cols]
        if any(c.value is not None for c in cells):
            table.rows.append(((model, method), cells))
    _rank(table, hib)
    return table


def calibration(aggs: Sequence[Agg]) -> Table:
    quant = [a for a in aggs if not a.fp and (a.calib_seconds is not None or a.peak_memory_bytes is not None)]
    fmts = _quantized_formats(quant)
    secs: dict[tuple[str, str, str], float] = {}
    mem: dict[tuple[str, str, str], int] = {}
    for a in quant:
        key = (a.model, a.method, a.format)
        if a.calib_seconds is not None:
            secs[key] = a.calib_seconds
        if a.peak_memory_bytes is not None:
            mem[key] = max(mem.get(key, 0), a.peak_memory_bytes)
    with_paper = any(paper_gpu_hours(a.model, a.method) is not None for a in quant)
    groups = [(fmt, ["Calib (s)", "Peak mem (GiB)", "vs MBQ"]) for fmt in fmts]
    if with_paper:
        groups.append(("Paper (A800)", ["GPU-h"]))
    table = Table(
        "calibration",
        "Calibration efficiency (Table 6 layout)",
        "Wall seconds of calibration (mean over seeds), peak memory, and time relative to MBQ on the same "
        "model and format (QIG's overhead is the paper's claim: +5% on InternVL2-8B).",
        ("Model", "Method"),
        groups,
    )
    for model, method in _row_keys(quant):
        cells: list[Cell] = []
        for fmt in fmts:
            s = secs.get((model, method, fmt))
            m = mem.get((model, method, fmt))
            ref = secs.get((model, "mbq", fmt))
            cells += [_num(s, 1), _num(m / 2**30 if m is not None else None, 2)]
            if s is not None and ref:
                ratio = s / ref - 1.0
                cells.append(Cell(ratio, "ref" if method == "mbq" else f"{ratio:+.1%}"))
            else:
                cells.append(Cell())
        if with_paper:
            cells.append(_num(paper_gpu_hours(model, method), 2))
        table.rows.append(((model, method), cells))
    return table


def _fmt(value: float, digits: int | None) -> str:
    return f"{value:.{digits}f}" if digits is not None else f"{value:.4g}"


def _with_interval(value: float, ci: Interval | None, digits: int | None, sample: Measurement | None) -> Cell:
    """``value ± half-width`` for an interval symmetric about ``value`` (t over seeds);
    ``value [low, high]`` otherwise: one clipped at its metric's range, or a bootstrap percentile
    interval (a half-width would claim values it does not hold, e.g. "10.00 ± 15.54" for [0, 31])."""
    if ci is None:
        return Cell(value, _fmt(value, digits), sample=sample)
    symmetric = math.isclose(ci.high - value, value - ci.low, rel_tol=1e-6, abs_tol=1e-12)
    if symmetric and not ci.method.endswith(CLIPPED):
        half = ci.half_width
        spread = f"{half:.{digits}f}" if digits is not None else f"{half:.2g}"
        return Cell(value, f"{_fmt(value, digits)} ± {spread}", low=ci.low, high=ci.high, sample=sample)
    text = f"{_fmt(value, digits)} [{_fmt(ci.low, digits)}, {_fmt(ci.high, digits)}]"
    return Cell(value, text, low=ci.low, high=ci.high, sample=sample)


def _stat(a: Agg | None, digits: int | None, scale: float = 1.0) -> Cell:
    """A measured number as ``mean ± half-width`` (scaled, e.g. fractions to percent)."""
    if a is None or math.isnan(a.value):
        return Cell()
    ci = a.interval.scaled(scale) if a.interval is not None else None
    return _with_interval(a.value * scale, ci, digits, a.sample)


def _mean_cell(aggs: Sequence[Agg], digits: int | None, scale: float) -> Cell:
    """Mean over tasks with its interval (per-seed task means, or the pooled examples)."""
    value = mean(a.value for a in aggs) * scale
    samples = [a.sample for a in aggs if a.sample is not None]
    if len(samples) != len(aggs):
        return _with_interval(value, None, digits, None)
    pooled = mean_of(samples)
    ci = interval(pooled) if pooled.seeds else None
    if ci is not None:  # centre on the mean of the stored task values (the pooled one may round)
        ci = Interval(
            value / scale, ci.low - ci.mean + value / scale, ci.high - ci.mean + value / scale, ci.n, ci.method
        )
        lo, hi = metric_range(aggs[0].metric, (a.value for a in aggs))
        ci = bounded(ci, lo, hi)
        assert ci is not None
        ci = ci.scaled(scale)
    return _with_interval(value, ci, digits, pooled)


def _num(value: float | None, digits: int | None) -> Cell:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Cell()
    return Cell(value, f"{value:.{digits}f}" if digits is not None else f"{value:.4g}")
