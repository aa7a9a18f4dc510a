"""Offline tiny models: ``ensure_tiny(alias)`` builds one once into the cache and returns its folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from qigbench.models.errors import UnknownModelError
from qigbench.models.tiny.common import BUILD_VERSION, atomic_build
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
    from qigbench.models.aliases import default_cache_dir

    build = TINY_BUILDERS.get(alias)
    if build is None:
        raise UnknownModelError(f"unknown tiny model {alias!r}; known: {', '.join(TINY_BUILDERS)}")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return atomic_build(root / "tiny" / f"{alias}-v{BUILD_VERSION}", build, alias=alias)


__all__ = ["TINY_BUILDERS", "ensure_tiny"]
