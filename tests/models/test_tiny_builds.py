"""Tiny models are deterministic, built once, built atomically, and loadable by local path."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from qigbench.models import load_model
from qigbench.models.tiny import ensure_tiny
from qigbench.models.tiny.common import MARKER


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.suffix in (".safetensors", ".json") and p.name != MARKER
    }


@pytest.mark.parametrize("alias", ["tiny-llama", "tiny-qwen2vl"])
def test_same_alias_gives_identical_files(tmp_path: Path, tiny_cache: Path, alias: str) -> None:
    first = ensure_tiny(alias, tiny_cache)
    second = ensure_tiny(alias, tmp_path)
    assert first != second
    digests = _digest(first)
    assert "model.safetensors" in digests and "tokenizer.json" in digests
    assert digests == _digest(second)


def test_build_is_idempotent(tiny_cache: Path) -> None:
    path = ensure_tiny("tiny-llama", tiny_cache)
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert ensure_tiny("tiny-llama", tiny_cache) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp


def test_local_path_works_like_the_alias(tiny_cache: Path) -> None:
    path = ensure_tiny("tiny-llama", tiny_cache)
    loaded = load_model(path)
    assert loaded.family.name == "llama" and loaded.source.startswith("local:")
    assert loaded.processor is None and loaded.tokenizer.pad_token == "<pad>"


def test_dtype_and_device_map_are_passed_to_from_pretrained(tiny_cache: Path) -> None:
    import torch

    loaded = load_model("tiny-llama", cache_dir=tiny_cache, dtype=torch.bfloat16, device_map="cpu")
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}
    assert {p.device.type for p in loaded.model.parameters()} == {"cpu"}
    assert not loaded.model.training
