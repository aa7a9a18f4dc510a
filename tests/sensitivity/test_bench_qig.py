"""pytest-benchmark: QIG path points batched on the batch dimension vs one forward/backward per point.

Run alone for numbers: ``pytest tests/sensitivity/test_bench_qig.py --benchmark-only``; in a normal
run the benchmark fixture runs each body a few times and the equality check still applies.
"""

from __future__ import annotations

import pytest
import torch
from pytest_benchmark.fixture import BenchmarkFixture
from sens_blocks import WEIGHT_ACT, make_target

from qigbench.sensitivity import AttributionTarget, QIGConfig, QIGProvider, TokenWeights

STEPS = 32


@pytest.fixture(scope="module")
def target() -> AttributionTarget:
    return make_target(b=2, t=32, h=64, fmt=WEIGHT_ACT, seed=0)


@pytest.mark.benchmark(group="qig-path-points")
@pytest.mark.parametrize("mode", ["batched-chunk8", "batched-chunk32", "sequential"])
def test_bench_qig_path_points(benchmark: BenchmarkFixture, target: AttributionTarget, mode: str) -> None:
    cfg = {
        "batched-chunk8": QIGConfig(steps=STEPS, chunk_size=8),
        "batched-chunk32": QIGConfig(steps=STEPS, chunk_size=32),
        "sequential": QIGConfig(steps=STEPS, batched=False),
    }[mode]
    provider = QIGProvider(cfg)
    out: TokenWeights = benchmark.pedantic(provider, args=(target,), rounds=3, iterations=1, warmup_rounds=1)
    reference = QIGProvider(QIGConfig(steps=STEPS, batched=False))(target)
    torch.testing.assert_close(out.weights, reference.weights, rtol=1e-5, atol=1e-7)
