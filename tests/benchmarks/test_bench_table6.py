"""pytest-benchmark: the paper's Table 6 (calibration cost) in interleaved rounds — a wrapper of
``qigbench.cost.table6`` (the same as ``qigbench table6``), printing every goal from the registry.

Rows: MBQ, QIG at the paper's m = 32, the fast variant (``qigbench.cost.table6.FAST_VARIANT``; a
``qig[preset=fast]``), leave-one-out, GPTQ, QIG+GPTQ (m = 32). Each
calibration runs in a fresh process; ratios are process CPU time over MBQ's in the same round,
median and range over rounds, plus peak-memory ratios (peak RSS, and the working memory above the
loaded model).

Sizes (``QIGBENCH_TABLE6``; unset: skipped, so ``pytest tests`` in CI does not run it - nine fresh
processes, about 2 CPU minutes even at the smallest size; CI covers the runner with fakes in
``tests/cost/test_table6.py`` and one real two-row run in ``tests/cost/test_table6_smoke.py``):

- ``ci``: tiny-qwen2vl, 8 samples, one round. It checks the machinery and prints the goals with
  their regime; its ratios say nothing about a real model.
- ``real``: Table 6 at a real width — ``shape:qwen2vl-7b@2+vision=2+width=4`` (Qwen2-VL-7B's block
  shape at 1/4 width: hidden 896, intermediate 4736, 7 heads / 1 key-value head of 128; the real
  vision tower width; the real vocabulary), 448 x 448 images (256 image tokens), 32 samples (128
  with ``QIGBENCH_BENCH_DEVICE=cuda``), W3A16, 3 rounds, leave-one-out in one round of its own
  (hours on a CPU). Raw numbers go to ``reports/scale/table6.jsonl`` as each run finishes; a rerun
  resumes. Many CPU hours on 2 shared cores: run it in the background.

Override with ``QIGBENCH_TABLE6_MODEL`` / ``_SAMPLES`` / ``_ROUNDS`` / ``_FORMAT`` / ``_IMAGE_SIZE`` /
``_LOO_ROUNDS`` / ``_BATCH_SIZE`` (real size on CPU: 2) / ``_MEMORY_BUDGET`` (real size on CPU: 1GiB) /
``_OUT`` (real: reports/scale/table6.jsonl, records keyed by plan; the same file ``qigbench table6``
writes, so this and the command below resume each other):

    qigbench table6 --samples 32 --batch-size 2 --rounds 3 --loo-rounds 1 --memory-budget 1GiB

    QIGBENCH_TABLE6=real pytest tests/benchmarks/test_bench_table6.py --benchmark-only -s
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from bench_common import bench_device

from qigbench.cost.goals import enforce
from qigbench.cost.table import machine_label
from qigbench.cost.table6 import Table6Plan, file_agreement, read_records, run_table6, table6_variants
from qigbench.cost.table6_summary import format_summary, summarise, summary_json

SIZE_ENV = "QIGBENCH_TABLE6"
REAL_MODEL = "shape:qwen2vl-7b@2+vision=2+width=4"


def table6_plan() -> Table6Plan:
    real = os.environ.get(SIZE_ENV, "ci") == "real"
    device = bench_device()

    def env(name: str, default: Any) -> Any:
        value = os.environ.get(f"{SIZE_ENV}_{name}")
        return type(default)(value) if value else default

    cuda = device.startswith("cuda")
    loo = env("LOO_ROUNDS", 0 if cuda else 1) if real else 0  # 0: no cap
    return Table6Plan(
        model=env("MODEL", REAL_MODEL if real else "tiny-qwen2vl"),
        format=env("FORMAT", "W3A16"),
        samples=env("SAMPLES", (128 if cuda else 32) if real else 8),
        image_size=env("IMAGE_SIZE", 448 if real else 64),
        rounds=env("ROUNDS", 3 if real else 1),
        device=device,
        # on a shared CPU box: MBQ's caption-loss pass in batches of 2 (its logits over the 152k vocabulary were
        # killed for memory at 4 beside other jobs), chunks of attribution and search capped at 1 GiB
        batch_size=env("BATCH_SIZE", 2 if real and not cuda else 4),
        memory_budget=env("MEMORY_BUDGET", "1GiB") if real and not cuda else None,
        variants=table6_variants(loo_rounds=loo or None),
    )


@pytest.mark.slow
@pytest.mark.skipif(SIZE_ENV not in os.environ, reason=f"opt-in (out of CI): set {SIZE_ENV}=ci or =real")
def test_bench_table6(benchmark: Any, bench_cache: Path, tmp_path: Path, summary: list[str]) -> None:
    plan = table6_plan()
    real = os.environ.get(SIZE_ENV, "ci") == "real"
    default_out = Path("reports/scale/table6.jsonl") if real else tmp_path / "table6.jsonl"  # one file, keyed by plan
    out = Path(os.environ.get(f"{SIZE_ENV}_OUT") or default_out)
    weights = None if real else tmp_path / "weights"
    records: list[dict[str, Any]] = []

    def run() -> None:
        records[:] = run_table6(plan, out, str(bench_cache), weights_dir=weights, say=print)

    benchmark.group = "table6"
    benchmark.pedantic(run, rounds=1, iterations=1)
    result = summarise(plan, records, file_agreement, read_records(out, plan, "floor"),
                       read_records(out, plan, "agreement"))
    benchmark.extra_info.update(summary_json(result), out=str(out))
    summary.append(format_summary(result, machine_label(plan.device)))  # its last lines: every goal's verdict

    assert {r.label for r in result.rows} == {v.label for v in plan.variants}, "every row was measured"
    for row in result.rows:
        assert row.cpu_ratio.low > 0 and 0 < row.mean_block_error < 1, row
    assert result.row("mbq").cpu_ratio.median == pytest.approx(1.0)
    assert result.agreement, "the fast variant's token weights are compared with m = 32's"
    assert asdict(result.plan)["samples"] == plan.samples
    enforce(result.verdicts)  # a missed goal passes only as a registered known gap (and its line says so)
