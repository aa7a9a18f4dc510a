"""Report tables as plain data, in the paper's layout, built from stored rows.

Tables are format-free (:class:`Table` of :class:`Cell`); :mod:`qigbench.report.render` turns
them into Markdown, HTML, CSV and LaTeX, so every output shows the same numbers.

* leaderboard (Table 2): rows model x method, column groups = formats, columns = tasks + average,
  the paper's average as a reference column where the model is one of the paper's;
* fidelity: KL, flip rate, block error, PPL per format;
* calibration efficiency (Table 6): seconds, peak memory, time relative to MBQ.

Seeds are averaged; an FP16 row (method ``fp16`` or a 16-bit format) is repeated in every
format group, as in the paper.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from statistics import mean

from qigbench.report.paper import paper_average, paper_gpu_hours, paper_model
from qigbench.results.metrics import MetricKind, is_known_metric, known_metrics, metric_info
from qigbench.results.row import ResultRow

FP_FORMATS = frozenset({"fp16", "bf16", "fp32", "w16a16", "fp"})
METHOD_ORDER = ("fp16", "rtn", "gptq", "awq", "sq", "smoothquant", "mbq", "qig", "qig+gptq", "loo", "qvlm", "tlq")
PAPER_FORMATS = ("W3A16", "W4A8")
FP_LABEL = "FP16"


@dataclass(frozen=True)
class Cell:
    value: float | None = None  # machine value (CSV); None = missing
    text: str = "—"  # display text
    rank: int | None = None  # 1 = best, 2 = second best in its column and model


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


def is_full_precision(method: str, fmt: str) -> bool:
    return method.lower() == "fp16" or fmt.lower() in FP_FORMATS


def method_sort_key(method: str) -> tuple[int, str]:
    base = method.split(" [")[0].lower()
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


def _rank(table: Table, higher_is_better: Sequence[bool | None]) -> None:
    """Mark best / second-best quantized method per model and column (ties share a rank)."""
    by_model: dict[str, list[int]] = defaultdict(list)
    for i, (head, _) in enumerate(table.rows):
        if head[1] != FP_LABEL:
            by_model[head[0]].append(i)
    for col, hib in enumerate(higher_is_better):
        if hib is None:
            continue
        for idxs in by_model.values():
            vals = sorted({v for i in idxs if (v := table.rows[i][1][col].value) is not None}, reverse=hib)
            if len(vals) < 2:
                continue
            for i in idxs:
                cell = table.rows[i][1][col]
                if cell.value is not None and cell.value in vals[:2]:
                    table.rows[i][1][col] = Cell(cell.value, cell.text, vals.index(cell.value) + 1)


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
    value: dict[tuple[str, str, str, str], float] = {}
    for a in acc:
        for fmt in fmts if a.fp else [a.format]:
            value[(a.model, FP_LABEL if a.fp else a.method, fmt, a.task)] = a.value * scale
    groups = []
    for fmt in fmts:
        tasks = sorted({t for (_, _, f, t) in value if f == fmt})
        groups.append((fmt, [*tasks, "Avg", *(["Paper avg"] if with_paper else [])]))
    unit = "accuracy in % (stored fractions x 100)" if scale == 100.0 else "accuracy as stored"
    table = Table(
        "leaderboard",
        "Leaderboard (Table 2 layout)",
        f"Rows: model x method; column groups: formats; {unit}; Avg over the group's tasks (— if one is missing); "
        "bold = best, underlined = second best quantized method per model. Paper avg: the paper's Table 2.",
        ("Model", "Method"),
        groups,
    )
    for model, method in _row_keys(acc):
        cells: list[Cell] = []
        for fmt, cols in groups:
            tasks = [c for c in cols if c not in ("Avg", "Paper avg")]
            vals = [value.get((model, method, fmt, t)) for t in tasks]
            cells += [_num(v, 2) for v in vals]
            present = [v for v in vals if v is not None]
            cells.append(_num(mean(present), 2) if present and len(present) == len(vals) else Cell())
            if with_paper:
                ref = paper_average(model, "fp16" if method == FP_LABEL else method, fmt, method == FP_LABEL)
                cells.append(_num(ref, 2))
        if any(c.value is not None for c in cells):
            table.rows.append(((model, method), cells))
    hib = [None if c == "Paper avg" else True for _, c in table.columns]
    _rank(table, hib)
    return table


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
    value = {(a.model, a.method, a.format, label(a.metric, a.task)): a.value for a in fid}
    groups, hib = [], []
    for fmt in fmts:
        pairs = sorted({(a.metric, a.task) for a in fid if a.format == fmt}, key=lambda p: (order.index(p[0]), p[1]))
        groups.append((fmt, [label(m, t) for m, t in pairs]))
        hib += [metric_info(m).higher_is_better for m, _ in pairs]
    table = Table(
        "fidelity",
        "Fidelity to the FP16 model",
        "Lower is better for every column (KL divergence, top-1 flip rate, block output error, perplexity); "
        "bold = best, underlined = second best per model.",
        ("Model", "Method"),
        groups,
    )
    for model, method in _row_keys(fid):
        cells = [_num(value.get((model, method, fmt, c)), None) for fmt, cols in groups for c in cols]
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


def _num(value: float | None, digits: int | None) -> Cell:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Cell()
    return Cell(value, f"{value:.{digits}f}" if digits is not None else f"{value:.4g}")
