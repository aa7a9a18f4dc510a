"""Tiny models and synthetic sets, built once per test session into a temporary cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from qigbench.data.synthetic import write_caption_set, write_text_set
from qigbench.models.loading import LoadedModel, load_model

_LOADED: dict[str, LoadedModel] = {}


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("qigbench-data-cache")


@pytest.fixture(scope="session")
def load_tiny(data_cache: Path):  # type: ignore[no-untyped-def]
    """``load_tiny(alias)``: a tiny model, built and loaded once per session."""

    def load(alias: str) -> LoadedModel:
        if alias not in _LOADED:
            _LOADED[alias] = load_model(alias, cache_dir=data_cache)
        return _LOADED[alias]

    return load


@pytest.fixture(scope="session")
def caption_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_caption_set(tmp_path_factory.mktemp("captions"), 12, seed=0, image_size=48)


@pytest.fixture(scope="session")
def ocr_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_caption_set(tmp_path_factory.mktemp("ocr"), 8, seed=0, kind="ocr", image_size=48)


@pytest.fixture(scope="session")
def text_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_text_set(tmp_path_factory.mktemp("text"), 60, seed=0)
