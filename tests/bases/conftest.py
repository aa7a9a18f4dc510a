"""tiny-qwen2vl (vision, text and padding tokens, answer masks) and the unquantized block contexts
the engine hands a method, for the tests of the method bases' glue."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from qigbench.data.defaults import default_calibration
from qigbench.data.loader import load_calibration
from qigbench.engine.context import BlockContext
from qigbench.engine.method import Method
from qigbench.engine.run import EngineConfig, calibrate
from qigbench.models.loading import LoadedModel, load_model
from qigbench.quant import parse_format


@pytest.fixture(scope="session")
def qwen(tmp_path_factory: pytest.TempPathFactory) -> tuple[LoadedModel, list[Any]]:
    """The model and four calibration samples in two padded batches."""
    shared = os.environ.get("QIGBENCH_CACHE")
    cache = Path(shared) if shared else tmp_path_factory.mktemp("qigbench-cache")
    loaded = load_model("tiny-qwen2vl", cache_dir=cache)
    source = default_calibration(loaded, cache, n=8, seed=0, image_size=32)
    return loaded, list(load_calibration(source, model=loaded, n_samples=4, batch_size=2).batches)


class KeepContexts(Method):
    """Keeps each block's context and leaves the block in full precision."""

    name = "keep-contexts"

    def __init__(self) -> None:
        super().__init__()
        self.kept: list[BlockContext] = []

    def quantize_block(self, ctx: BlockContext) -> None:
        self.kept.append(ctx)


@pytest.fixture(scope="session")
def block_contexts(qwen: tuple[LoadedModel, list[Any]]) -> dict[str, list[BlockContext]]:
    """Per format (weight-only W3A16g16, weight-activation W4A8): every block's context."""
    loaded, batches = qwen
    out = {}
    for fmt in ("W3A16g16", "W4A8"):
        keep = KeepContexts()
        calibrate(loaded.model, loaded.family, batches, keep, parse_format(fmt), EngineConfig(progress=False))
        out[fmt] = keep.kept
    return out
