"""Check the predictor where it can be checked: predict a deeper model from a shallow run, then measure
the deeper model for real and compare time and peak memory.

Each side is one ``qigbench cost --json`` in a fresh process (so each peak is its own run's): the
shallow run (``small`` blocks: MBQ's prepare pass timed at ``small``, ``small - 1``, ... depths and
fitted by least squares) gives the prediction at ``target`` blocks; the target run's own
``calibrate()`` time and peak are the measurement. Both use the same clock (``cpu``: process CPU
time, steady on a shared machine). The comparison goes through the goals registry
(``predict_time_error``, ``predict_peak_error``: within 15%).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from qigbench.cost.errors import CostModelError
from qigbench.cost.goals import Verdict, check
from qigbench.cost.isolated import ALLOCATOR_ENV
from qigbench.cost.predict import Measurement, Phase, Prediction, predict
from qigbench.models.shapes.alias import ShapeRequest, parse_shape_alias


@dataclass(frozen=True)
class DepthCheckPlan:
    model: str = "shape:qwen2vl-7b@3+vision=2+width=4"  # the shallow build; its depth is ``small``
    target: int = 6
    methods: tuple[str, ...] = ("mbq", "qig:qig.steps=32")  # `qigbench cost --method` entries
    format: str = "W3A16"
    samples: int = 8
    image_size: int = 448
    clock: str = "cpu"
    device: str = "cpu"
    prepare_depths: int = 3
    memory_budget: str | None = None  # `qigbench cost --memory-budget` (e.g. 2GiB on a shared machine)

    @property
    def shape(self) -> ShapeRequest:
        return parse_shape_alias(self.model)

    def regime(self) -> str:
        shape = self.shape
        return (f"shape:{shape.name} width 1/{shape.width_divisor}, {self.samples} samples at {self.image_size}px, "
                f"{self.format}, {self.device}, {self.clock} clock")


@dataclass(frozen=True)
class DepthCheck:
    method: str
    predicted: Prediction
    measured_seconds: float
    measured_peak: int
    time: Verdict
    peak: Verdict


def _measurement(data: dict[str, Any]) -> Measurement:
    """A Measurement back from ``qigbench cost --json``."""
    m = dict(data)
    for key in ("capture", "prepare"):
        m[key] = Phase(**m[key])
    m["prepare_at"] = tuple((int(d), Phase(**p)) for d, p in m.get("prepare_at", ()))
    if m.get("prepare_warmup"):
        depth, phase = m["prepare_warmup"]
        m["prepare_warmup"] = (int(depth), Phase(**phase))
    m["block_seconds"] = tuple(m["block_seconds"])
    return Measurement(**m)


def measured_peak(m: Measurement) -> int:
    """The run's peak: its largest phase (capture, prepare, block loop)."""
    return max(m.capture.peak_bytes, m.prepare.peak_bytes, m.block_phase_peak_bytes)


def _cost_json(plan: DepthCheckPlan, shape: ShapeRequest, method: str, out: Path, prepare_depths: int,
               cache_dir: str | None, timeout: float | None) -> dict[str, Any]:  # fmt: skip
    args = [
        sys.executable, "-m", "qigbench.cli", "cost", "--model", shape.spelling, "--method", method, "--format",
        plan.format, "--samples", str(plan.samples), "--image-size", str(plan.image_size), "--device", plan.device,
        "--clock", plan.clock, "--prepare-depths", str(prepare_depths), "--no-progress", "--json", str(out),
    ]  # fmt: skip
    if cache_dir:
        args += ["--cache-dir", cache_dir]
    if plan.memory_budget:
        args += ["--memory-budget", plan.memory_budget]
    env = {**os.environ, **ALLOCATOR_ENV}
    out.unlink(missing_ok=True)  # never read an earlier run's file
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    out.with_suffix(".md").write_text(done.stdout)  # the Table 6 layout it printed
    if not out.exists():
        raise CostModelError(f"qigbench cost {method} at {shape.spelling} failed ({done.returncode}):\n"
                             f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    row = json.loads(out.read_text())["rows"][0]
    if row["measurement"] is None:
        raise CostModelError(f"qigbench cost {method} at {shape.spelling}: {row['error']}")
    return row  # type: ignore[no-any-return]


def run_depth_check(
    plan: DepthCheckPlan, work: Path, cache_dir: str | None = None, timeout: float | None = None,
    say: Callable[[str], None] = print, gap: Callable[[str], str | None] = lambda goal: None,
) -> list[DepthCheck]:  # fmt: skip
    """Per method: predict ``plan.target`` blocks from the shallow run, measure it, compare (verdicts).

    ``gap(goal name)``: a known gap of this measurement (e.g. a CI-size run), or None."""
    work.mkdir(parents=True, exist_ok=True)
    small = plan.shape
    deep = replace(small, layers=plan.target)
    if plan.target <= small.layers:
        raise CostModelError(f"the target depth ({plan.target}) must be deeper than the measured {small.layers}")
    results = []
    for method in plan.methods:
        slug = "".join(c if c.isalnum() else "_" for c in method)
        say(f"depth check {method}: {small.spelling} (predicts {plan.target} blocks), then {deep.spelling}")
        shallow = _cost_json(plan, small, method, work / f"{slug}-l{small.layers}.json", plan.prepare_depths,
                             cache_dir, timeout)  # fmt: skip
        m = _measurement(shallow["measurement"])
        predicted = predict(m, plan.target, 0)  # same vision tower built on both sides: no vision scaling
        target = _measurement(_cost_json(plan, deep, method, work / f"{slug}-l{plan.target}.json", 1, cache_dir,
                                         timeout)["measurement"])  # fmt: skip
        peak = measured_peak(target)
        regime = f"{method}, {plan.regime()}, {small.layers} -> {plan.target} blocks"
        results.append(DepthCheck(
            method, predicted, target.total_seconds, peak,
            check("predict_time_error", predicted.seconds / target.total_seconds - 1, regime,
                  gap=gap("predict_time_error")),
            check("predict_peak_error", predicted.peak_bytes / peak - 1, regime, gap=gap("predict_peak_error")),
        ))  # fmt: skip
        say(f"  {results[-1].time.line}\n  {results[-1].peak.line}")
    return results


def format_depth_check(plan: DepthCheckPlan, checks: Sequence[DepthCheck]) -> str:
    unit = "CPU s" if plan.clock == "cpu" else "s"
    gib = 2**30
    lines = [
        f"Predictor check: {plan.regime()}; predicted from {plan.shape.layers} blocks, measured at {plan.target}",
        "",
        f"| method | predicted {unit} | measured {unit} | error | predicted peak GiB | measured peak GiB | error | "
        "prepare fit (fixed + per block) | warnings |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in checks:
        fit = c.predicted.prepare_fit
        fit_text = (f"{fit.fixed:.1f} + {fit.slope:.2f}/block over depths {list(fit.depths)}" if fit else "—")
        lines.append(
            f"| {c.method} | {c.predicted.seconds:.0f} | {c.measured_seconds:.0f} | {c.time.value:+.1%} | "
            f"{c.predicted.peak_bytes / gib:.2f} | {c.measured_peak / gib:.2f} | {c.peak.value:+.1%} | {fit_text} | "
            f"{'; '.join(c.predicted.warnings) or 'none'} |"
        )
    lines += ["", "Goals (qigbench/cost/goals.py):", ""]
    lines += [f"- {v.line}" for c in checks for v in (c.time, c.peak)]
    return "\n".join(lines)
