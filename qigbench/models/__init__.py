"""Model families as data, aliases, loading through ``from_pretrained``, tiny offline models."""

from __future__ import annotations

from qigbench.models.aliases import ALIASES, ModelAlias, resolve_source
from qigbench.models.family import GroupKind, ModelFamily, ScalingGroup
from qigbench.models.loading import LoadedModel, load_model
from qigbench.models.registry import (
    FAMILIES,
    applicable_groups,
    family_for,
    get_blocks,
    resolve_group,
)
from qigbench.models.scaling import apply_scales_
from qigbench.models.tiny import ensure_tiny
from qigbench.models.token_types import classify_tokens

__all__ = [
    "ALIASES",
    "FAMILIES",
    "GroupKind",
    "LoadedModel",
    "ModelAlias",
    "ModelFamily",
    "ScalingGroup",
    "applicable_groups",
    "apply_scales_",
    "classify_tokens",
    "ensure_tiny",
    "family_for",
    "get_blocks",
    "load_model",
    "resolve_group",
    "resolve_source",
]
