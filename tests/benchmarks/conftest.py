"""Fixtures of the calibration benchmarks and a summary printed at the end of the run.

Models and calibration sets are built once per session into ``$QIGBENCH_CACHE`` when it is set
(tox points it at a shared cache), else into a temporary folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from bench_common import VLM_ALIAS, BenchSize, bench_size, caption_batches, fresh_model, text_batches

from qigbench.models.random_llama import ensure_random_llama

#: one line per measurement worth reading without the benchmark table (printed at the end)
SUMMARY: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SUMMARY:
        terminalreporter.section("qigbench benchmarks")
        for line in SUMMARY:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def summary() -> list[str]:
    return SUMMARY


@pytest.fixture(scope="session")
def bench_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = os.environ.get("QIGBENCH_CACHE")
    return Path(env).expanduser() if env else tmp_path_factory.mktemp("qigbench-bench-cache")


@pytest.fixture(scope="session")
def size() -> BenchSize:
    return bench_size()


@pytest.fixture(scope="session")
def llama_dir(bench_cache: Path, size: BenchSize) -> Path:
    return ensure_random_llama(size.spec, bench_cache)


@pytest.fixture(scope="session")
def llama_batches(llama_dir: Path, bench_cache: Path, size: BenchSize) -> Sequence[Any]:
    return text_batches(fresh_model(llama_dir, bench_cache), bench_cache, size)


@pytest.fixture(scope="session")
def vlm_batches(bench_cache: Path) -> Sequence[Any]:
    return caption_batches(fresh_model(VLM_ALIAS, bench_cache), bench_cache, samples=8)
