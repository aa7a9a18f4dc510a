"""Report figures (matplotlib, Agg backend: no display needed on CI or GPU boxes).

* metric vs weight bits, one line per method, one panel per model (the paper's "accuracy vs
  bits" view; any registered metric can be chosen); error bars are the 95% intervals clipped to
  the metric's range, an accuracy axis never goes below 0%, the legend sits outside the data;
* calibration time bars per method, grouped by model and format, each bar labelled with its
  value (RTN's fraction of a second is a bar nobody can see next to a minute); a log axis when
  the times span more than :data:`LOG_SPAN`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from statistics import mean
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from qigbench.errors import QigbenchError
from qigbench.quant import parse_format
from qigbench.report.tables import FP_LABEL, Agg, format_sort_key, method_sort_key, metric_range
from qigbench.results.metrics import MetricKind, is_known_metric, metric_info


def _text(label: str) -> str:
    """Model names are user input: keep ``$`` from switching matplotlib into mathtext."""
    return label.replace("$", r"\$")


def weight_bits(fmt: str, fp: bool) -> tuple[int, int] | None:
    """(weight bits, activation bits) of a format string; 16/16 for full precision."""
    if fp:
        return (16, 16)
    try:
        parsed = parse_format(fmt)
    except QigbenchError:
        return None
    return (parsed.w_bits, parsed.a_bits)


def _config_values(aggs: Sequence[Agg], metric: str | None) -> dict[tuple[str, str, str, bool], float]:
    """Per (model, method, format, fp): the mean over tasks of ``metric`` (default: accuracy metrics)."""
    picked: dict[tuple[str, str, str, bool], list[float]] = defaultdict(list)
    for a in aggs:
        if metric is None:
            ok = is_known_metric(a.metric) and metric_info(a.metric).kind is MetricKind.ACCURACY
        else:
            ok = a.metric == metric
        if ok:
            picked[(a.model, a.method, a.format, a.fp)].append(a.value)
    return {k: mean(v) for k, v in picked.items()}


def _config_spread(aggs: Sequence[Agg], metric: str | None) -> dict[tuple[str, str, str, bool], float]:
    """Per (model, method, format, fp): half-width of the 95% interval of the mean over tasks.

    Tasks are measured on different examples, so their errors combine as independent ones:
    ``sqrt(sum h_t^2) / n_tasks``. A configuration with a task lacking an interval gets none.
    (Drawn clipped to the metric's range: :func:`error_bars`.)
    """
    halves: dict[tuple[str, str, str, bool], list[float | None]] = defaultdict(list)
    for a in aggs:
        if metric is None:
            ok = is_known_metric(a.metric) and metric_info(a.metric).kind is MetricKind.ACCURACY
        else:
            ok = a.metric == metric
        if ok:
            halves[(a.model, a.method, a.format, a.fp)].append(None if a.interval is None else a.interval.half_width)
    return {
        k: math.sqrt(sum(h * h for h in hs if h is not None)) / len(hs)
        for k, hs in halves.items()
        if all(h is not None for h in hs)
    }


def error_bars(value: float, half: float, low: float, high: float) -> tuple[float, float]:
    """(below, above) extents of ``value ± half`` clipped to ``[low, high]``."""
    return (max(0.0, min(half, value - low)), max(0.0, min(half, high - value)))


def _range_of(aggs: Sequence[Agg], metric: str | None) -> tuple[float, float]:
    """The plotted metric's range (accuracy: [0, 1] as fractions)."""
    picked = [a for a in aggs if (a.metric == metric if metric else is_known_metric(a.metric))]
    if metric is None:
        return (0.0, 1.0) if all(a.value <= 1.0 for a in picked) else (0.0, 100.0)
    return metric_range(metric, (a.value for a in picked))


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
DODGE = 0.06  # weight bits between neighbouring overlapping lines


def dodge(
    lines: dict[str, list[tuple[int, int, str, float]]],
    intervals: dict[tuple[str, int], tuple[float, float]] | None = None,
) -> dict[str, float]:
    """Horizontal offsets (in bits) that keep lines sharing a point apart: at chance level every
    method has the same accuracy, and five identical lines drawn on top of each other show one;
    with ``intervals`` ((label, weight bits) -> (low, high) of the error bar), lines whose error
    bars overlap at a width are kept apart too, so every bar can be read. Lines that collide with
    no other keep offset 0."""
    spans = intervals or {}

    def span(label: str, w: int, v: float) -> tuple[float, float]:
        return spans.get((label, w), (v, v))

    shared: set[str] = set()
    for a, line_a in lines.items():
        for b, line_b in lines.items():
            if a >= b:
                continue
            for w, _, _, va in line_a:
                for w2, _, _, vb in line_b:
                    if w != w2:
                        continue
                    (lo_a, hi_a), (lo_b, hi_b) = span(a, w, va), span(b, w, vb)
                    if round(va, 9) == round(vb, 9) or (lo_a <= hi_b and lo_b <= hi_a):
                        shared.update((a, b))
    order = [label for label in lines if label in shared]
    centre = (len(order) - 1) / 2
    offsets = {label: 0.0 for label in lines}
    offsets.update({label: (i - centre) * DODGE for i, label in enumerate(order)})
    return offsets


def metric_vs_bits(aggs: Sequence[Agg], metric: str | None = None) -> Figure | None:
    """Lines of ``metric`` (mean over tasks) against weight bits, with 95% error bars where known;
    ``None`` when nothing to plot."""
    values = _config_values(aggs, metric)
    spread = _config_spread(aggs, metric)
    if not values:
        return None
    scale = 100.0 if metric is None and max(abs(v) for v in values.values()) <= 1.0 else 1.0
    low, high = _range_of(aggs, metric)
    low, high = low * (scale if math.isfinite(low) else 1.0), high * (scale if math.isfinite(high) else 1.0)
    ylabel = "mean accuracy over tasks" + (" (%)" if scale == 100.0 else "")
    if metric is not None:
        ylabel = f"{metric_info(metric).label} (mean over tasks)"
    models = sorted({k[0] for k in values})
    cols = min(len(models), 3)
    rows = math.ceil(len(models) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.8 * cols + 1.8, 3.6 * rows), squeeze=False)
    handles: dict[str, Any] = {}  # one legend for the figure, outside every panel
    for ax, model in zip(axes.flat, models, strict=False):
        points: dict[str, list[tuple[int, int, str, float]]] = defaultdict(list)  # method -> (w, a, fmt, value)
        for (m, method, fmt, fp), v in values.items():
            bits = weight_bits(fmt, fp)
            if m != model or bits is None:
                continue
            if fp:
                ax.axhline(v * scale, color="grey", linestyle="--", linewidth=1, label=FP_LABEL)
                continue
            points[method].append((bits[0], bits[1], fmt, v * scale))
        lines: dict[str, list[tuple[int, int, str, float]]] = {}
        line_method: dict[str, str] = {}
        for method in sorted(points, key=method_sort_key):
            pts = sorted(points[method])
            # one line per method across weight bits; split by activation bits only when a weight
            # width appears with several activation widths (W4A8 and W4A16 are not one curve)
            split = len({p[0] for p in pts}) < len(pts)
            for p in pts:
                label = f"{method} (A{p[1]})" if split else method
                lines.setdefault(label, []).append(p)
                line_method[label] = method
        bars_of = {
            label: [
                error_bars(p[3], spread.get((model, line_method[label], p[2], False), 0.0) * scale, low, high)
                for p in line
            ]
            for label, line in lines.items()
        }
        intervals = {
            (label, p[0]): (p[3] - b[0], p[3] + b[1])
            for label, line in lines.items()
            for p, b in zip(line, bars_of[label], strict=True)
        }
        offsets = dodge(lines, intervals)
        formats_at: dict[int, set[str]] = defaultdict(set)
        for pts in points.values():
            for w, _, fmt, _ in pts:
                formats_at[w].add(fmt)
        # one format per weight width: the x tick names it; else each point carries its format
        on_ticks = all(len(f) == 1 for f in formats_at.values())
        labelled: set[tuple[str, float]] = set()  # one format label per point, not one per overlapping line
        for n, (label, line) in enumerate(lines.items()):
            xs = [p[0] + offsets[label] for p in line]
            bars = bars_of[label]
            yerr = [[b[0] for b in bars], [b[1] for b in bars]]
            drawn = ax.errorbar(xs, [p[3] for p in line], yerr=yerr, marker=MARKERS[n % len(MARKERS)], capsize=3,
                                label=_text(label), alpha=0.85, clip_on=False)  # a 0% marker on the axis shows whole
            handles.setdefault(_text(label), drawn)
            for x, (_, _, fmt, v) in zip(xs, line, strict=True):
                if on_ticks or (fmt, round(v, 9)) in labelled:
                    continue
                labelled.add((fmt, round(v, 9)))
                ax.annotate(_text(fmt), (x, v), textcoords="offset points", xytext=(4, 6), fontsize=6, color="grey")
        if any(offsets.values()):
            ax.text(0.01, 0.01, "methods whose values or error bars overlap are offset sideways",
                    transform=ax.transAxes, fontsize=6, color="grey")
        ax.set_title(_text(model))
        ax.set_xlabel("weight bits")
        ax.set_ylabel(ylabel)
        ticks = sorted(formats_at) or [3, 4]
        ax.set_xticks(ticks)
        if on_ticks and formats_at:
            ax.set_xticklabels([f"{w}\n{_text(next(iter(formats_at[w])))}" for w in ticks], fontsize=8)
        ax.grid(alpha=0.3)
        bottom, top = ax.get_ylim()  # an accuracy axis stops at 0% and 100%, never beyond
        ax.set_ylim(max(bottom, low) if math.isfinite(low) else bottom, min(top, high) if math.isfinite(high) else top)
        for handle, text in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(text, handle)
    for ax in list(axes.flat)[len(models) :]:
        ax.set_visible(False)
    legend_share = 1.7 / (4.8 * cols + 1.8)  # the figure's right strip, beside the panels
    fig.tight_layout(rect=(0.0, 0.0, 1.0 - legend_share, 1.0))
    fig.legend(list(handles.values()), list(handles), fontsize=7, loc="upper right", frameon=True)
    return fig


def calibration_bars(aggs: Sequence[Agg]) -> Figure | None:
    """Calibration seconds per method, one bar group per (model, format)."""
    secs: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for a in aggs:
        if not a.fp and a.calib_seconds is not None:
            secs[(a.model, a.format)][a.method] = a.calib_seconds
    if not secs:
        return None
    groups = sorted(secs, key=lambda k: (k[0], format_sort_key(k[1])))
    methods = sorted({m for d in secs.values() for m in d}, key=method_sort_key)
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(groups) * len(methods) + 2.5), 3.8))
    every = [v for d in secs.values() for v in d.values() if v > 0]
    log = bool(every) and max(every) / min(every) > LOG_SPAN
    for i, method in enumerate(methods):
        xs = [g + i * width for g in range(len(groups)) if method in secs[groups[g]]]
        ys = [secs[groups[g]][method] for g in range(len(groups)) if method in secs[groups[g]]]
        bars = ax.bar(xs, ys, width=width, label=_text(method))
        turn = 90 if len(methods) > 4 else 0
        ax.bar_label(bars, labels=[_seconds(y) for y in ys], fontsize=6, padding=1, rotation=turn)
    if log:
        ax.set_yscale("log")
    bottom, top = ax.get_ylim()
    ax.set_ylim(bottom, top * (3.0 if log else 1.15))  # room for the labels above the tallest bar
    ax.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))])
    ax.set_xticklabels([_text(f"{m}\n{f}") for m, f in groups], fontsize=8)
    ax.set_ylabel("calibration wall time (s)" + (", log scale" if log else ""))
    ax.set_title("Calibration time per method")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


LOG_SPAN = 30.0  # slowest / fastest calibration beyond which the time axis is logarithmic


def _seconds(value: float) -> str:
    return f"{value:.2g}s" if value < 10 else f"{value:.0f}s"


def save(fig: Figure, stem: Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg``; returns both paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=120)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths
