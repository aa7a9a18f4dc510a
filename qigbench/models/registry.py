"""Map a config's ``model_type`` to its :class:`ModelFamily`, and resolve family paths to modules.

This is the one place that knows which families exist; everything else asks it, so adding an
architecture is adding a module under :mod:`qigbench.models.families` and one line below.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from qigbench.models.errors import ScalingGroupError, UnknownFamilyError
from qigbench.models.families import internlm2, internvl, llama, llava, llava_onevision, qwen2_5_vl, qwen2vl
from qigbench.models.family import ModelFamily

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
    wanted_llm = family.llm_model_type
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
    blocks = module_at(model, family.blocks, what="decoder blocks")
    if not isinstance(blocks, nn.ModuleList):
        raise UnknownFamilyError(
            f"family {family.name!r} says decoder blocks live at {family.blocks!r}, but that is a "
            f"{type(blocks).__name__}, not a ModuleList; fix the family description"
        )
    return blocks


def module_at(root: nn.Module, path: str, *, what: str) -> nn.Module:
    """``root.get_submodule(path)``, or an error saying the family description does not match."""
    try:
        return root.get_submodule(path)
    except AttributeError:
        raise ScalingGroupError(
            f"{what}: no module at {path!r} in {type(root).__name__}; the family description does not match "
            "this model (check the module names with model.named_modules())"
        ) from None
