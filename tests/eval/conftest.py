"""Shared, session-scoped fixtures: one task pack, the tiny models (built offline once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qigbench.eval.tasks import write_task_pack

PACK_N = 40  # examples per pack task (the oracle / random models are free; real models use --limit)


@pytest.fixture(scope="session")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_task_pack(tmp_path_factory.mktemp("pack"), seed=0, n=PACK_N)


@pytest.fixture(scope="session")
def tiny_vlm():
    from qigbench.models.loading import load_model

    return load_model("tiny-qwen2vl")


@pytest.fixture(scope="session")
def tiny_lm():
    from qigbench.models.loading import load_model

    return load_model("tiny-llama")
