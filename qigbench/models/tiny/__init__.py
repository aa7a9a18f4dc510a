"""Offline tiny models: ``ensure_tiny(alias)`` builds one once into the cache and returns its folder.

Which tiny models exist, and the function that builds each, is declared by the family files
(``FAMILY.tiny``); the shared pieces of the builders live in this package.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from qigbench.cache import atomic_build, cache_root
from qigbench.models.errors import UnknownModelError
from qigbench.models.registry import FAMILIES
from qigbench.models.specimen import TinySpecimen
from qigbench.models.tiny.common import BUILD_VERSION, MARKER, stamped

#: every family's tiny specimens, by alias
TINY_SPECIMENS: dict[str, TinySpecimen] = {t.alias: t for family in FAMILIES for t in family.tiny}
#: alias -> its builder's reference (``"module:function"``, imported only when built)
TINY_BUILDERS: dict[str, str] = {alias: t.build for alias, t in TINY_SPECIMENS.items()}


def ensure_tiny(alias: str, cache_dir: Path | str | None = None) -> Path:
    """Folder of the tiny model ``alias`` (built on first use; idempotent and deterministic)."""
    specimen = TINY_SPECIMENS.get(alias)
    if specimen is None:
        raise UnknownModelError(f"unknown tiny model {alias!r}; known: {', '.join(TINY_SPECIMENS)}")
    build: Callable[[Path], None] = specimen.builder()
    return atomic_build(tiny_path(alias, cache_dir), stamped(build, alias=alias), marker=MARKER)


def tiny_path(alias: str, cache_dir: Path | str | None = None) -> Path:
    """Where :func:`ensure_tiny` builds ``alias`` (it may not exist yet)."""
    return cache_root(cache_dir) / "tiny" / f"{alias}-v{BUILD_VERSION}"


__all__ = ["TINY_BUILDERS", "TINY_SPECIMENS", "ensure_tiny", "tiny_path"]
