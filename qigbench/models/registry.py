"""Map a config's ``model_type`` to its :class:`ModelFamily`, and resolve family paths to modules.

This is the one place that knows which families exist; everything else asks it, so adding an
architecture is adding a module under :mod:`qigbench.models.families` and one line below.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from torch import nn

from qigbench.models.errors import ScalingGroupError, UnknownFamilyError
from qigbench.models.families import internlm2, internvl, llama, llava, llava_onevision, qwen2_5_vl, qwen2vl
from qigbench.models.family import ModelFamily, ScalingGroup
from qigbench.quant import QuantLinear

FAMILIES: tuple[ModelFamily, ...] = (
    qwen2vl.FAMILY,
    qwen2_5_vl.FAMILY,
    llava_onevision.FAMILY,
    llava.FAMILY,
    internvl.FAMILY,
    llama.FAMILY,
    internlm2.FAMILY,
)

_BY_MODEL_TYPE: dict[str, ModelFamily] = {mt: fam for fam in FAMILIES for mt in fam.model_types}
_BY_NAME: dict[str, ModelFamily] = {fam.name: fam for fam in FAMILIES}


def family_for(config_or_model: Any) -> ModelFamily:
    """The family describing a model or config, keyed by ``config.model_type``."""
    config = getattr(config_or_model, "config", config_or_model)
    model_type = getattr(config, "model_type", None)
    family = _BY_MODEL_TYPE.get(str(model_type))
    if family is None:
        known = ", ".join(sorted(_BY_MODEL_TYPE))
        raise UnknownFamilyError(
            f"no model family describes model_type {model_type!r} (known: {known}). To add one, write "
            "qigbench/models/families/<name>.py with FAMILY = ModelFamily(...) (decoder block path, scaling "
            "groups, vision modules, vision token config keys) and list it in qigbench/models/registry.py FAMILIES."
        )
    # remote-code wrappers (internvl_chat) reuse one model_type for several language models
    wanted_llm = family.extra.get("llm_model_type")
    llm_config = getattr(config, "llm_config", None)
    llm_type = llm_config.get("model_type") if isinstance(llm_config, dict) else getattr(llm_config, "model_type", None)
    if wanted_llm and llm_type and llm_type != wanted_llm:
        raise UnknownFamilyError(
            f"model_type {model_type!r} with language model {llm_type!r} is not described (family {family.name!r} "
            f"covers {wanted_llm!r} only). Add a family for it under qigbench/models/families/ and teach "
            "family_for in qigbench/models/registry.py to pick it."
        )
    return family


def family_named(name: str) -> ModelFamily:
    """The family with this ``ModelFamily.name`` (used by aliases, which know the family before loading)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownFamilyError(f"no model family named {name!r}; known: {', '.join(sorted(_BY_NAME))}") from None


def get_blocks(model: nn.Module, family: ModelFamily) -> nn.ModuleList:
    """The language decoder blocks, in order."""
    blocks = _submodule(model, family.blocks, what="decoder blocks")
    if not isinstance(blocks, nn.ModuleList):
        raise UnknownFamilyError(
            f"family {family.name!r} says decoder blocks live at {family.blocks!r}, but that is a "
            f"{type(blocks).__name__}, not a ModuleList; fix the family description"
        )
    return blocks


@dataclass(frozen=True)
class ResolvedGroup:
    """A scaling group's modules inside one block."""

    prev_op: nn.Module
    linears: list[nn.Linear]
    inspect: nn.Module

    def __iter__(self) -> Iterator[Any]:
        """Unpack as ``prev_op, linears, inspect = resolve_group(block, group)``."""
        return iter((self.prev_op, self.linears, self.inspect))


def resolve_group(block: nn.Module, group: ScalingGroup) -> ResolvedGroup:
    """The previous op, balanced linears and inspected module of ``group`` inside ``block``."""
    prev = _submodule(block, group.prev_op, what=f"group {group.name!r} previous op")
    linears = []
    for path in group.linears:
        lin = _submodule(block, path, what=f"group {group.name!r} linear")
        if not isinstance(lin, nn.Linear):
            raise ScalingGroupError(f"group {group.name!r}: {path!r} is a {type(lin).__name__}, expected nn.Linear")
        linears.append(lin)
    inspect = _submodule(block, group.inspect, what=f"group {group.name!r} inspected module")
    return ResolvedGroup(prev_op=prev, linears=linears, inspect=inspect)


def prev_out_features(prev: nn.Module) -> int | None:
    """Channels the previous op emits (the size of ``s`` it can absorb), or None if unknown."""
    if isinstance(prev, nn.Linear):
        return prev.out_features
    weight = getattr(prev, "weight", None)
    out_features = getattr(prev, "out_features", None)
    if isinstance(out_features, int) and isinstance(weight, nn.Parameter) and weight.dim() == 2:
        return out_features  # a QuantLinear: its rows still absorb 1/s exactly (each row has its own grid)
    if isinstance(weight, nn.Parameter) and weight.dim() == 1:
        return int(weight.shape[0])
    return None


def group_applies(block: nn.Module, group: ScalingGroup) -> bool:
    """Whether ``group`` exists in ``block``: the "o" group does not under GQA (shapes differ)."""
    resolved = resolve_group(block, group)
    width = prev_out_features(resolved.prev_op)
    in_features = {lin.in_features for lin in resolved.linears}
    matches = width is not None and in_features == {width}
    if not matches and not group.requires_matching_shapes:
        raise ScalingGroupError(
            f"group {group.name!r}: previous op emits {width} channels but the linears take {sorted(in_features)}; "
            "the family description is wrong for this block"
        )
    return matches


def block_linear_names(block: nn.Module, family: ModelFamily) -> list[str]:
    """Every linear of ``block`` that is quantized, in block order: all of its ``nn.Linear`` (and
    already quantized) modules except the family's explicit ``keep_fp`` list."""
    linears = [name for name, m in block.named_modules() if isinstance(m, (nn.Linear, QuantLinear))]
    kept = {k.path for k in family.keep_fp}
    unknown = sorted(kept - set(linears))
    if unknown:
        raise ScalingGroupError(
            f"family {family.name!r} keeps {unknown} in full precision, but the block has no such linear; "
            "fix keep_fp in the family description"
        )
    return [name for name in linears if name not in kept]


def applicable_groups(block: nn.Module, family: ModelFamily) -> list[ScalingGroup]:
    """The family's groups that exist in this block, in block order."""
    return [g for g in family.groups if group_applies(block, g)]


def _submodule(root: nn.Module, path: str, *, what: str) -> nn.Module:
    try:
        return root.get_submodule(path)
    except AttributeError:
        raise ScalingGroupError(
            f"{what}: no module at {path!r} in {type(root).__name__}; the family description does not match "
            "this model (check the module names with model.named_modules())"
        ) from None
