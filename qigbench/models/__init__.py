"""Model families as data, aliases, loading through ``from_pretrained``, tiny offline models."""

from __future__ import annotations

from qigbench.models.aliases import ALIASES, ModelAlias, resolve_source
from qigbench.models.family import GroupKind, ModelFamily, ScalingGroup
from qigbench.models.groups import ResolvedGroup, apply_scales_, resolve_groups
from qigbench.models.loading import LoadedModel, load_model
from qigbench.models.registry import FAMILIES, family_for, get_blocks
from qigbench.models.tiny import ensure_tiny
from qigbench.models.token_types import classify_tokens

__all__ = [
    "ALIASES",
    "FAMILIES",
    "GroupKind",
    "LoadedModel",
    "ModelAlias",
    "ModelFamily",
    "ResolvedGroup",
    "ScalingGroup",
    "apply_scales_",
    "classify_tokens",
    "ensure_tiny",
    "family_for",
    "get_blocks",
    "load_model",
    "resolve_groups",
    "resolve_source",
]
