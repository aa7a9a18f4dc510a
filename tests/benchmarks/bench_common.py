"""Shared setup of the calibration benchmarks: the model sizes, the data, one calibrate() call.

Two sizes, chosen by ``QIGBENCH_BENCH_SIZE``:

- ``ci`` (default): a random LLaMA small enough that every benchmark in this folder runs in CI
  time on two shared cores (hidden 256, 2 layers, 8 samples x 64 tokens, QIG with 8 path points);
- ``mid``: the issue's mid-size model (hidden 512, intermediate 1408, 4 layers, 16 samples x 128
  tokens, QIG with the paper's 32 path points). Several minutes per method on one CPU core.

The intermediate size is a multiple of 128 so the W4 g128 / W3A16 group size divides every linear.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qigbench.data.defaults import default_calibration
from qigbench.data.loader import load_calibration
from qigbench.engine.method import get_method
from qigbench.engine.run import CalibrationReport, EngineConfig, calibrate
from qigbench.models.loading import LoadedModel, load_model
from qigbench.models.random_llama import RandomLlamaSpec
from qigbench.quant import parse_format

SIZE_ENV = "QIGBENCH_BENCH_SIZE"
DEVICE_ENV = "QIGBENCH_BENCH_DEVICE"
FORMAT = "W3A16"
VLM_ALIAS = "tiny-qwen2vl"


@dataclass(frozen=True)
class BenchSize:
    name: str
    spec: RandomLlamaSpec
    samples: int
    tokens: int
    batch_size: int
    #: QIG path points in the per-method calibration benchmarks (QIG vs MBQ always uses the paper's 32)
    qig_steps: int
    rounds: int


SIZES = {
    "ci": BenchSize(
        "ci",
        RandomLlamaSpec(
            hidden_size=256, intermediate_size=768, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4
        ),
        samples=8,
        tokens=64,
        batch_size=4,
        qig_steps=8,
        rounds=2,
    ),
    "mid": BenchSize(
        "mid",
        RandomLlamaSpec(hidden_size=512, intermediate_size=1408, num_hidden_layers=4),
        samples=16,
        tokens=128,
        batch_size=4,
        qig_steps=32,
        rounds=1,
    ),
}


def bench_size() -> BenchSize:
    name = os.environ.get(SIZE_ENV, "ci")
    if name not in SIZES:
        raise ValueError(f"{SIZE_ENV}={name!r}; choose one of {', '.join(SIZES)}")
    return SIZES[name]


def bench_device() -> str:
    """The compute device (``QIGBENCH_BENCH_DEVICE``, default cpu): the benchmarks run on CUDA too."""
    return os.environ.get(DEVICE_ENV, "cpu")


def text_batches(loaded: LoadedModel, cache: Path, size: BenchSize) -> Sequence[Any]:
    source = default_calibration(loaded, cache, n=size.samples, seed=0)
    calib = load_calibration(
        source, model=loaded, n_samples=size.samples, batch_size=size.batch_size, max_length=size.tokens
    )
    return calib.batches


def caption_batches(loaded: LoadedModel, cache: Path, samples: int, batch_size: int = 4) -> Sequence[Any]:
    source = default_calibration(loaded, cache, n=samples, seed=0)
    return load_calibration(source, model=loaded, n_samples=samples, batch_size=batch_size).batches


def fresh_model(name_or_path: str | Path, cache: Path) -> LoadedModel:
    """A newly loaded fp32 model: every round calibrates from full precision (calibrate works in place)."""
    return load_model(name_or_path, cache_dir=cache, device=bench_device())


def run_method(
    loaded: LoadedModel, batches: Sequence[Any], method: str, options: dict[str, str] | None = None
) -> CalibrationReport:
    return calibrate(
        loaded.model,
        loaded.family,
        batches,
        get_method(method, options or {}),
        parse_format(FORMAT),
        EngineConfig(device=bench_device(), progress=False),
    )


def token_count(batches: Sequence[Any]) -> int:
    """Non-padding calibration tokens."""
    return int(sum(int((b.token_types != 0).sum()) for b in batches))


class Stopwatch:
    """Wall time of a ``with`` block."""

    seconds: float = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start
