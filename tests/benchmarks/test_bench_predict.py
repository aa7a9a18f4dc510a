"""The cost predictor against a real measurement: predict a deeper model from a shallow run, measure
the deeper one, compare time and peak memory (a wrapper of ``qigbench.cost.depth_check``).

Sizes (``QIGBENCH_PREDICT``; unset: skipped, out of ``pytest tests`` in CI - two model builds and a
deeper measured run; CI covers the fit and the prediction in ``tests/cost/``):

- ``ci``: ``shape:qwen2vl-7b@3+vision=1+width=4``, 2 samples at 112 px, predicting and
  measuring 4 blocks, MBQ only. Runs of seconds: timing noise can exceed the goal's 15%, so a miss at
  this size is printed as a known gap of the CI size (the goal itself is checked at ``real``).
- ``real``: issue 19's check — ``shape:qwen2vl-7b@3+vision=2+width=4`` (prepare timed at 3, 2 and 1
  blocks, least squares), 8 samples at 448 px, predicting 6 blocks, and the 6-block model measured
  for real side by side with it (the same load on both); ``mbq`` and ``qig`` at its default; CPU
  clock; MBQ's caption-loss pass one sample a batch, chunks capped at 1 GiB (small memory on a
  shared machine).

    QIGBENCH_PREDICT=real pytest tests/benchmarks/test_bench_predict.py --benchmark-only -s
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from bench_common import bench_device

from qigbench.cost.depth_check import DepthCheckPlan, format_depth_check, run_depth_check
from qigbench.cost.goals import enforce

SIZE_ENV = "QIGBENCH_PREDICT"
CI_GAP = ("CI size (2 samples at 112 px, seconds a run on shared cores): noise is above 15%; the goal is checked "
          f"with {SIZE_ENV}=real")


def depth_plan() -> tuple[DepthCheckPlan, bool]:
    real = os.environ.get(SIZE_ENV, "ci") == "real"
    device = bench_device()
    if real:
        cpu = not device.startswith("cuda")
        # on a shared CPU box: chunks capped, MBQ's caption-loss pass one sample at a time (its logits over the
        # 152k vocabulary), so the two runs side by side stay small
        budget, batch = ("1GiB", 1) if cpu else (None, 4)
        return DepthCheckPlan(device=device, clock="cpu" if cpu else "wall", memory_budget=budget,
                              batch_size=batch, methods=("mbq", "qig")), True  # fmt: skip
    return DepthCheckPlan(model="shape:qwen2vl-7b@3+vision=1+width=4", target=4, methods=("mbq",), samples=2,
                          image_size=112, device=device, batch_size=1), False  # fmt: skip


@pytest.mark.slow
@pytest.mark.skipif(SIZE_ENV not in os.environ, reason=f"opt-in (out of CI): set {SIZE_ENV}=ci or =real")
def test_bench_predictor_against_a_deeper_run(
    benchmark: Any, bench_cache: Path, tmp_path: Path, summary: list[str]
) -> None:
    plan, real = depth_plan()
    out = Path(os.environ.get(f"{SIZE_ENV}_OUT") or ("reports/scale/predict" if real else tmp_path))
    checks: list[Any] = []

    def run() -> None:
        checks[:] = run_depth_check(plan, out, str(bench_cache), gap=lambda goal: None if real else CI_GAP)

    benchmark.group = "predictor"
    benchmark.pedantic(run, rounds=1, iterations=1)
    text = format_depth_check(plan, checks)
    summary.append(text)
    if real:
        (out / "depth_check.md").write_text(text + "\n")
    benchmark.extra_info.update(
        plan=vars(plan), errors={c.method: {"time": c.time.value, "peak": c.peak.value} for c in checks}
    )
    assert [c.method for c in checks] == list(plan.methods)
    for c in checks:
        assert c.measured_seconds > 0 and c.measured_peak > 0 and c.predicted.depth == plan.target
    enforce(v for c in checks for v in (c.time, c.peak))
