"""Short model names (``qwen2vl``, ``tiny-llama`` ...) and where each one's weights come from.

A name is resolved in this order: an existing local folder (or any name that looks like a path),
a known alias, then an ``org/name`` Hugging Face id. Anything else is an error listing the aliases.
Every alias comes from a family file (``qigbench/models/families/``: its real checkpoints, its tiny
specimens and its real shapes); this module only collects them and resolves a name. Offline aliases
are built by the builders (``models/tiny``, ``models/shapes``, ``models/smollm2``,
``models/smollm2_llava``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qigbench.cache import cache_root
from qigbench.models.errors import UnknownModelError
from qigbench.models.registry import FAMILIES
from qigbench.models.shapes.data import PREFIX as SHAPE_PREFIX
from qigbench.models.shapes.data import SHAPES
from qigbench.models.specimen import ModelAlias, SourceKind

__all__ = ["ALIASES", "ALIAS_BY_NAME", "ModelAlias", "ResolvedSource", "SourceKind", "alias_for", "resolve_source"]


def _family_aliases() -> tuple[ModelAlias, ...]:
    """Each family file's aliases: its real checkpoints, then its tiny specimens."""
    out: list[ModelAlias] = []
    for family in FAMILIES:
        out.extend(family.aliases)
        out.extend(ModelAlias(t.alias, family.name, SourceKind.TINY, t.alias, note=t.note) for t in family.tiny)
    return tuple(out)


def _shape_aliases() -> tuple[ModelAlias, ...]:
    return tuple(
        ModelAlias(
            f"{SHAPE_PREFIX}{spec.name}", spec.family, SourceKind.SHAPE, spec.checkpoint,
            note=f"random weights at {spec.checkpoint}'s shape; {SHAPE_SPELLING}",
        )
        for spec in SHAPES.values()
    )


SHAPE_SPELLING = "@LAYERS[+vision=N][+width=D] (default @2+vision=2+width=1)"
ALIASES: tuple[ModelAlias, ...] = _family_aliases() + _shape_aliases()

ALIAS_BY_NAME: dict[str, ModelAlias] = {a.name: a for a in ALIASES}


def alias_for(name: str) -> ModelAlias | None:
    """The alias ``name`` spells, including ``shape:NAME@LAYERS+...`` (options stripped), or None."""
    return ALIAS_BY_NAME.get(name.partition("@")[0] if name.startswith(SHAPE_PREFIX) else name)


@dataclass(frozen=True)
class ResolvedSource:
    """What ``from_pretrained`` is given, and how to describe it to a user."""

    location: str  # a local folder or a hub id
    kind: SourceKind
    alias: ModelAlias | None

    @property
    def description(self) -> str:
        name = f"{self.alias.name} -> " if self.alias else ""
        return f"{name}{self.kind.value}:{self.location}"


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", ".", "~"))


def resolve_source(
    name_or_path: str | Path, *, cache_dir: Path | str | None = None, build: bool = True
) -> ResolvedSource:
    """Turn an alias, local folder or hub id into a ``from_pretrained`` location.

    Tiny and package models are built into ``cache_dir`` on first use (unless ``build=False``,
    which only reports where they would be).
    """
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        return ResolvedSource(str(path), SourceKind.LOCAL, None)
    if _looks_like_path(name):
        raise UnknownModelError(
            f"model folder {name!r} does not exist; pass an existing folder or an alias ({_known()})"
        )
    alias = alias_for(name)
    if alias is None:
        if name.count("/") == 1 and all(name.split("/")):
            return ResolvedSource(name, SourceKind.HF, None)
        raise UnknownModelError(f"unknown model {name!r}; known aliases: {_known()} (or pass a local folder)")
    if alias.kind is SourceKind.HF:
        return ResolvedSource(alias.source, alias.kind, alias)
    return ResolvedSource(str(_offline_folder(alias, name, cache_root(cache_dir), build)), alias.kind, alias)


def _offline_folder(alias: ModelAlias, name: str, root: Path, build: bool) -> Path:
    """Where an offline alias lives under the cache ``root``, built first unless ``build=False``.
    (The builders import torch and transformers: imported here, only when one is needed.)"""
    if alias.kind is SourceKind.SHAPE:
        from qigbench.models.shapes.alias import parse_shape_alias

        request = parse_shape_alias(name)
        return request.build(root) if build else request.folder(root)
    if alias.kind is SourceKind.TINY:
        from qigbench.models.tiny import ensure_tiny, tiny_path

        return ensure_tiny(alias.name, root) if build else tiny_path(alias.name, root)
    if alias.kind is SourceKind.TRAINED:
        from qigbench.models.smollm2_llava import ensure_smollm2_llava, smollm2_llava_dir  # the one TRAINED alias

        return ensure_smollm2_llava(root) if build else smollm2_llava_dir(root)
    from qigbench.models.smollm2 import ensure_smollm2, smollm2_dir  # the one PACKAGE alias

    return ensure_smollm2(root) if build else smollm2_dir(root)


def _known() -> str:
    return ", ".join(a.name for a in ALIASES)
