"""Check the predictor where it can be checked: predict a deeper model from a shallow run, then measure
the deeper model for real and compare time and peak memory.

Each side is one ``qigbench cost --json`` in a fresh process (so each peak is its own run's): the
shallow run (``small`` blocks: MBQ's prepare pass timed at ``small``, ``small - 1``, ... depths and
fitted by least squares) gives the prediction at ``target`` blocks; the target run's own
``calibrate()`` time and peak are the measurement. Both use the same clock (``cpu``: process CPU
time). The comparison goes through the goals registry (``predict_time_error``,
``predict_peak_error``: within 15%).

``side_by_side`` (default) runs the two at the same time: on a shared machine the CPU time of the
same work drifts by 20-40% over minutes (cache and core sharing with other jobs; measured here:
the same block took 10.7 s in one run and 15.2 s in the next), so two runs measured one after the
other would mostly compare the machine's load. Side by side they see the same load.
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
from qigbench.cost.isolated import ALLOCATOR_ENV, IsolatedRequest
from qigbench.cost.predict import Measurement, Phase, Prediction, predict
from qigbench.models.shapes.alias import ShapeRequest, parse_shape_alias


@dataclass(frozen=True)
class DepthCheckPlan:
    model: str = "shape:qwen2vl-7b@3+vision=2+width=4"  # the shallow build; its depth is ``small``
    target: int = 6
    methods: tuple[str, ...] = ("mbq", "qig")  # `qigbench cost --method` entries (qig: its default)
    format: str = "W3A16"
    samples: int = 8
    image_size: int = 448
    clock: str = "cpu"
    device: str = "cpu"
    prepare_depths: int = 3
    memory_budget: str | None = None  # `qigbench cost --memory-budget` (e.g. 2GiB on a shared machine)
    batch_size: int = 4
    side_by_side: bool = True

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


@dataclass
class _CostRun:
    """One ``qigbench cost --json`` in a fresh process."""

    shape: ShapeRequest
    method: str
    out: Path
    process: subprocess.Popen[str]

    @classmethod
    def start(cls, plan: DepthCheckPlan, shape: ShapeRequest, method: str, out: Path, prepare_depths: int,
              cache_dir: str | None) -> _CostRun:  # fmt: skip
        args = [
            sys.executable, "-m", "qigbench.cli", "cost", "--model", shape.spelling, "--method", method, "--format",
            plan.format, "--samples", str(plan.samples), "--image-size", str(plan.image_size), "--device",
            plan.device, "--clock", plan.clock, "--prepare-depths", str(prepare_depths), "--batch-size",
            str(plan.batch_size), "--no-progress", "--json", str(out),
        ]  # fmt: skip
        if cache_dir:
            args += ["--cache-dir", cache_dir]
        if plan.memory_budget:
            args += ["--memory-budget", plan.memory_budget]
        env = {**os.environ, **ALLOCATOR_ENV}
        out.unlink(missing_ok=True)  # never read an earlier run's file
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        return cls(shape, method, out, process)

    def result(self, timeout: float | None) -> dict[str, Any]:
        stdout, stderr = self.process.communicate(timeout=timeout)
        self.out.with_suffix(".md").write_text(stdout)  # the Table 6 layout it printed
        if not self.out.exists():
            raise CostModelError(f"qigbench cost {self.method} at {self.shape.spelling} failed "
                                 f"({self.process.returncode}):\n{stdout[-2000:]}\n{stderr[-4000:]}")  # fmt: skip
        row = json.loads(self.out.read_text())["rows"][0]
        if row["measurement"] is None:
            raise CostModelError(f"qigbench cost {self.method} at {self.shape.spelling}: {row['error']}")
        return row  # type: ignore[no-any-return]


def run_depth_check(
    plan: DepthCheckPlan, work: Path, cache_dir: str | None = None, timeout: float | None = None,
    say: Callable[[str], None] = print, gap: Callable[[str], str | None] = lambda goal: None,
) -> list[DepthCheck]:  # fmt: skip
    """Per method: predict ``plan.target`` blocks from the shallow run, measure it, compare (verdicts).

    ``gap(goal name)``: a known gap of this measurement (e.g. a CI-size run), or None."""
    work.mkdir(parents=True, exist_ok=True)
    small = plan.shape
    if plan.side_by_side:  # build both models and the calibration set first: the runs then only load them
        for layers in (small.layers, plan.target):
            req = IsolatedRequest(model=replace(small, layers=layers).spelling, method="rtn", samples=plan.samples,
                                  image_size=plan.image_size, device=plan.device, cache_dir=cache_dir)  # fmt: skip
            done = subprocess.run([sys.executable, "-m", "qigbench.cost.isolated", "build"], input=req.to_json(),
                                  capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip
            if done.returncode:
                raise CostModelError(f"building {req.model} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    deep = replace(small, layers=plan.target)
    if plan.target <= small.layers:
        raise CostModelError(f"the target depth ({plan.target}) must be deeper than the measured {small.layers}")
    results = []
    for method in plan.methods:
        slug = "".join(c if c.isalnum() else "_" for c in method)
        how = "side by side with" if plan.side_by_side else "then"
        say(f"depth check {method}: {small.spelling} (predicts {plan.target} blocks), {how} {deep.spelling}")
        runs = [(small, work / f"{slug}-l{small.layers}.json", plan.prepare_depths),
                (deep, work / f"{slug}-l{plan.target}.json", 1)]  # fmt: skip
        if plan.side_by_side:
            started = [_CostRun.start(plan, s, method, o, d, cache_dir) for s, o, d in runs]
            shallow, deep_row = (r.result(timeout) for r in started)
        else:
            shallow, deep_row = (_CostRun.start(plan, s, method, o, d, cache_dir).result(timeout) for s, o, d in runs)
        m = _measurement(shallow["measurement"])
        predicted = predict(m, plan.target, 0)  # same vision tower built on both sides: no vision scaling
        target = _measurement(deep_row["measurement"])
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
