"""pytest-benchmark: calibration time of every method on the same random LLaMA and data.

Not timed assertions: the numbers go to the benchmark table (group ``calibration``) with the
format, data size and mean block error in ``extra_info``. Each round reloads the fp model in the
(untimed) setup, so every round calibrates from full precision.

    pytest tests/benchmarks/test_bench_calibration.py --benchmark-only               # CI size
    QIGBENCH_BENCH_SIZE=mid pytest tests/benchmarks/test_bench_calibration.py --benchmark-only

MBQ needs vision tokens (its ratio is vision-gradient / text-gradient), so it is timed on the tiny
VLM instead; its row says so in ``extra_info["model"]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from bench_common import FORMAT, VLM_ALIAS, BenchSize, fresh_model, run_method, token_count

from qigbench.engine.run import CalibrationReport
from qigbench.models.loading import LoadedModel

TEXT_METHODS = ("rtn", "gptq", "awq", "smoothquant", "qig", "qig-gptq")


def _options(method: str, size: BenchSize) -> dict[str, str]:
    return {"qig.steps": str(size.qig_steps)} if method.startswith("qig") else {}


def _bench(
    benchmark: Any, source: str | Path, cache: Path, batches: Sequence[Any], method: str, options: dict[str, str],
    rounds: int,
) -> CalibrationReport:  # fmt: skip
    reports: list[CalibrationReport] = []

    def setup() -> tuple[tuple[LoadedModel], dict[str, Any]]:
        return (fresh_model(source, cache),), {}

    def target(loaded: LoadedModel) -> None:
        reports.append(run_method(loaded, batches, method, options))

    benchmark.group = "calibration"
    benchmark.pedantic(target, setup=setup, rounds=rounds, iterations=1)
    report = reports[-1]
    benchmark.extra_info.update(
        method=method,
        options=options,
        format=FORMAT,
        samples=sum(int(b.token_types.shape[0]) for b in batches),
        tokens=token_count(batches),
        blocks=len(report.blocks),
        mean_block_error=report.mean_block_error,
        engine_seconds=[r.seconds for r in reports],
    )
    return report


@pytest.mark.parametrize("method", TEXT_METHODS)
def test_bench_calibration(
    benchmark: Any, method: str, llama_dir: Path, bench_cache: Path, llama_batches: Sequence[Any], size: BenchSize,
    summary: list[str],
) -> None:  # fmt: skip
    report = _bench(benchmark, llama_dir, bench_cache, llama_batches, method, _options(method, size), size.rounds)
    benchmark.extra_info["model"] = llama_dir.name
    assert len(report.blocks) == size.spec.num_hidden_layers
    assert 0.0 < report.mean_block_error < 1.0, "a quantized block should reproduce its fp output roughly"
    summary.append(
        f"calibration {method:12s} {FORMAT} {llama_dir.name}: {report.seconds:7.2f} s, "
        f"mean block error {report.mean_block_error:.3e}"
    )


def test_bench_calibration_mbq(
    benchmark: Any, bench_cache: Path, vlm_batches: Sequence[Any], size: BenchSize, summary: list[str]
) -> None:
    report = _bench(benchmark, VLM_ALIAS, bench_cache, vlm_batches, "mbq", {}, size.rounds)
    benchmark.extra_info["model"] = VLM_ALIAS
    assert 0.0 < report.mean_block_error < 1.0
    summary.append(
        f"calibration {'mbq':12s} {FORMAT} {VLM_ALIAS}: {report.seconds:7.2f} s, "
        f"mean block error {report.mean_block_error:.3e}"
    )
