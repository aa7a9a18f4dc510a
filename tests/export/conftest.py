from __future__ import annotations

from pathlib import Path

import pytest

from qigbench.data.defaults import default_calibration
from qigbench.data.loader import load_calibration
from qigbench.models.loading import LoadedModel, load_model


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import os

    shared = os.environ.get("QIGBENCH_CACHE")
    return Path(shared) if shared else tmp_path_factory.mktemp("qigbench-cache")


@pytest.fixture(scope="session")
def calib_for(cache_dir: Path):  # type: ignore[no-untyped-def]
    """calib_for(loaded, n) -> calibration batches for that model (synthetic, offline, seeded)."""

    def make(loaded: LoadedModel, n: int = 4, max_length: int | None = None):  # type: ignore[no-untyped-def]
        source = default_calibration(loaded, cache_dir, n=max(n, 8), seed=0, image_size=32)
        if not loaded.family.multimodal and max_length is None:
            max_length = 32
        return list(load_calibration(source, model=loaded, n_samples=n, batch_size=2, max_length=max_length).batches)

    return make


@pytest.fixture(scope="session")
def loader(cache_dir: Path):  # type: ignore[no-untyped-def]
    def load(alias: str) -> LoadedModel:
        return load_model(alias, cache_dir=cache_dir)

    return load
