"""Print predictions in the paper's Table 6 layout (model x method, hours) with the paper's GPU-hours."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from qigbench.cost.measure import MeasuredRun
from qigbench.cost.paper import PAPER_COLUMNS, PAPER_TABLE6
from qigbench.cost.predict import Prediction
from qigbench.models.shapes.alias import ShapeRequest
from qigbench.models.shapes.data import ShapeSpec

GIB = 1024**3


@dataclass(frozen=True)
class CostRow:
    label: str  # the method as asked for, e.g. "qig" or "qig:sensitivity=leave_one_out"
    run: MeasuredRun | None
    prediction: Prediction | None
    error: str = ""  # why the measured run failed (e.g. device out of memory); then run is None


@dataclass(frozen=True)
class Setting:
    """What every row was measured with (the request minus the method)."""

    spec: ShapeSpec
    shape: ShapeRequest
    device: str
    dtype: str
    samples: int
    image_size: int
    format: str


def paper_key(method: str, options: Sequence[tuple[str, str]]) -> str | None:
    """Which Table 6 column a method run corresponds to (None: not in the paper's table)."""
    opts = dict(options)
    if method == "qig" and opts.get("sensitivity") == "leave_one_out":
        return "leave_one_out"
    if method in ("mbq", "qig") and "sensitivity" not in opts:
        return method
    return None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; the platform's processor string elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_label(device: str) -> str:
    """The machine the numbers came from, in words (put it next to every number you publish)."""
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.device(device))
        return f"{props.name}, {props.total_memory / GIB:.0f} GiB"
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB if hasattr(os, "sysconf") else 0.0
    gpu = "no GPU" if not torch.cuda.is_available() else "GPU unused"
    return f"{os.cpu_count()}-core {cpu_model()} ({platform.machine()}), {ram:.0f} GiB RAM, {gpu}"


def format_table(setting: Setting, rows: Sequence[CostRow]) -> str:
    """Table 6 layout for one model, then the breakdown each prediction came from."""
    spec, shape = setting.spec, setting.shape
    built_vision = shape.resolved_vision_layers()
    vision = f", vision tower {built_vision} of {spec.vision_layers} layers" if spec.multimodal else ""
    width = f", language-model width 1/{shape.width_divisor}" if shape.width_divisor != 1 else ", real widths"
    images = f" with {setting.image_size}x{setting.image_size} images" if spec.multimodal else ""
    lines = [
        f"Predicted whole-model calibration cost of {spec.name} ({spec.checkpoint}), Table 6 layout",
        f"machine: {machine_label(setting.device)}; device {setting.device}, {setting.dtype}",
        f"measured on: {shape.layers} of {spec.layers} decoder blocks{vision}{width}; "
        f"{setting.samples} samples{images}; format {setting.format}",
        "",
    ]
    done = [r for r in rows if r.prediction is not None]
    if any(r.run is not None and r.run.measurement.clock == "cpu" for r in done):
        lines.insert(3, "times: this process's CPU seconds (--clock cpu), not wall time")
    base = done[0].prediction.seconds if done and done[0].prediction else 0.0
    header = ["Model", *[r.label for r in rows]]
    cells = [spec.name]
    for r in rows:
        if r.prediction is None:
            cells.append(f"failed: {r.error}")
            continue
        delta = "" if r is done[0] else f" ({(r.prediction.seconds - base) / 60:+.1f} min)"
        cells.append(f"{r.prediction.hours:.2f} h{delta}, {r.prediction.peak_bytes / GIB:.1f} GiB")
    paper = PAPER_TABLE6.get(spec.name)
    header.append("paper, A800 80GB GPU-h (" + " / ".join(name for _, name in PAPER_COLUMNS) + ")")
    cells.append(" / ".join(f"{paper[k]:.2f}" for k, _ in PAPER_COLUMNS) if paper else "not in the paper's Table 6")
    lines += _markdown([header, cells])
    lines += ["", f"How each prediction was made (seconds; whole model = {spec.layers} blocks"
              + (f", {spec.vision_layers} vision layers" if spec.multimodal else "") + "):", ""]
    detail = [[
        "method", "s/block (measured)", f"blocks x{spec.layers}", "prepare fixed (with warm-up) + per-block", "capture",
        "vision layers", "other", "total h", "peak GiB (phase)", "mean block error", "paper GPU-h",
    ]]
    for r in done:
        p, run = r.prediction, r.run
        assert p is not None and run is not None
        m = run.measurement
        phase = max(p.peaks, key=lambda k: p.peaks[k])
        column = paper_key(run.request.method, run.request.options)
        paper_hours = f"{paper[column]:.2f}" if paper and column else "—"
        detail.append([
            r.label,
            f"{sum(m.block_seconds) / len(m.block_seconds):.1f}",
            f"{p.parts['blocks']:.0f}",
            f"{p.parts['prepare_fixed'] + p.parts.get('prepare_warmup', 0.0):.0f} + {p.parts['prepare_per_block']:.0f}",
            f"{p.parts['capture']:.0f}",
            f"{p.parts['vision']:.0f}",
            f"{p.parts['other']:.0f}",
            f"{p.hours:.3f}",
            f"{p.peak_bytes / GIB:.1f} ({phase})",
            f"{run.report.mean_block_error:.4g}",
            paper_hours,
        ])
    lines += _markdown(detail)
    warnings = [f"{r.label}: {w}" for r in done if r.prediction is not None for w in r.prediction.warnings]
    if warnings:
        lines += ["", "warnings (the predictions above rest on these):"] + [f"- {w}" for w in warnings]
    if spec.substitution:
        lines += ["", f"note: {spec.substitution}"]
    return "\n".join(lines)


def _markdown(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return out
