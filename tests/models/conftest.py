"""Tiny models built once per test session into a temporary cache, loaded through ``load_model``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qigbench.cache import CACHE_ENV, cache_root
from qigbench.models import LoadedModel, load_model
from qigbench.models.aliases import ALIAS_BY_NAME, ALIASES, SourceKind
from qigbench.models.registry import family_named

TINY_ALIASES = tuple(a.name for a in ALIASES if a.kind is SourceKind.TINY)  # every tiny family, from the registry
VLM_ALIASES = tuple(a for a in TINY_ALIASES if family_named(ALIAS_BY_NAME[a].family).multimodal)

_LOADED: dict[str, LoadedModel] = {}


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared cache when ``$QIGBENCH_CACHE`` is set (tox, CI), as ``cache_dir`` in tests/conftest.py:
    a private one converted SmolLM2 a second time (27 s CPU) into 517 MB of pytest's temp folder."""
    return cache_root() if os.environ.get(CACHE_ENV) else tmp_path_factory.mktemp("qigbench-cache")


@pytest.fixture(scope="session")
def load_tiny(tiny_cache: Path):  # type: ignore[no-untyped-def]
    """``load_tiny(alias)``: the loaded tiny model (built and loaded once per session)."""

    def load(alias: str) -> LoadedModel:
        if alias not in _LOADED:
            _LOADED[alias] = load_model(alias, cache_dir=tiny_cache)
        return _LOADED[alias]

    return load


def test_image(width: int = 56, height: int = 42, seed: int = 0) -> Image.Image:
    """A small deterministic RGB image (not square, so resizing paths are exercised)."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


test_image.__test__ = False  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def prompt_batch():  # type: ignore[no-untyped-def]
    """``prompt_batch(loaded, texts)``: see :func:`make_prompt_batch`."""
    return make_prompt_batch


def make_prompt_batch(loaded: LoadedModel, texts: list[str], *, with_image: bool = True):  # type: ignore[no-untyped-def]
    """Chat-formatted prompts through the real processor (or tokenizer): one image per prompt, padded."""
    if loaded.processor is None:
        chats = [loaded.tokenizer.apply_chat_template([{"role": "user", "content": t}], tokenize=False) for t in texts]
        return loaded.tokenizer(chats, return_tensors="pt", padding=True, add_special_tokens=False)
    chats = []
    for text in texts:
        content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": text}]
        chats.append(
            loaded.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
        )
    images = [test_image(seed=i) for i in range(len(texts))] if with_image else None
    return loaded.processor(text=chats, images=images, return_tensors="pt", padding=True)
