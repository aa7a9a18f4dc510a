"""Offline tiny models: ``ensure_tiny(alias)`` builds one once into the cache and returns its folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from qigbench.cache import atomic_build, cache_root
from qigbench.models.errors import UnknownModelError
from qigbench.models.tiny.common import BUILD_VERSION, MARKER, stamped
from qigbench.models.tiny.internvl import build_internvl
from qigbench.models.tiny.llama import build_llama
from qigbench.models.tiny.llava import build_llava
from qigbench.models.tiny.llava_onevision import build_llava_onevision
from qigbench.models.tiny.qwen2vl import build_qwen2_5_vl, build_qwen2vl

TINY_BUILDERS: dict[str, Callable[[Path], None]] = {
    "tiny-qwen2vl": build_qwen2vl,
    "tiny-qwen2.5vl": build_qwen2_5_vl,
    "tiny-llava-ov": build_llava_onevision,
    "tiny-internvl": build_internvl,
    "tiny-llama": build_llama,
    "tiny-llava": build_llava,
}


def ensure_tiny(alias: str, cache_dir: Path | str | None = None) -> Path:
    """Folder of the tiny model ``alias`` (built on first use; idempotent and deterministic)."""
    build = TINY_BUILDERS.get(alias)
    if build is None:
        raise UnknownModelError(f"unknown tiny model {alias!r}; known: {', '.join(TINY_BUILDERS)}")
    return atomic_build(tiny_path(alias, cache_dir), stamped(build, alias=alias), marker=MARKER)


def tiny_path(alias: str, cache_dir: Path | str | None = None) -> Path:
    """Where :func:`ensure_tiny` builds ``alias`` (it may not exist yet)."""
    return cache_root(cache_dir) / "tiny" / f"{alias}-v{BUILD_VERSION}"


__all__ = ["TINY_BUILDERS", "ensure_tiny", "tiny_path"]
