"""Map a config's ``model_type`` to its :class:`ModelFamily`, and resolve family paths to modules.

The families are the modules of :mod:`qigbench.models.families`: every module there (but the
``_private`` helpers) defines ``FAMILY = ModelFamily(...)`` and is registered by being there, with
its aliases, tiny specimen and real shapes (nothing to list anywhere else). Everything else asks
this module.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import Any

from torch import nn

import qigbench.models.families as families_package
from qigbench.models.errors import ScalingGroupError, UnknownFamilyError
from qigbench.models.family import ModelFamily


def discover(package: Any = families_package) -> tuple[ModelFamily, ...]:
    """The ``FAMILY`` of every public module of ``package`` (sorted by module name), checked."""
    found: list[ModelFamily] = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        family = getattr(module, "FAMILY", None)
        if not isinstance(family, ModelFamily):
            raise UnknownFamilyError(
                f"{module.__name__} defines no FAMILY = ModelFamily(...); every public module of "
                f"{package.__name__} is a family file (name a helper module with a leading underscore)"
            )
        found.append(family)
    check_families(found)
    return tuple(found)


def check_families(found: list[ModelFamily]) -> None:
    """Names, model types and aliases are unique; what a family declares belongs to it."""
    seen: dict[str, str] = {}
    for family in found:
        keys = [("family", family.name), *(("model_type", f"{t}/{family.llm_model_type}") for t in family.model_types)]
        keys += [("alias", a.name) for a in family.aliases] + [("alias", t.alias) for t in family.tiny]
        keys += [("shape", s.name) for s in family.shapes]
        for kind, key in keys:
            owner = seen.setdefault(f"{kind}:{key}", family.name)
            if owner != family.name:
                raise UnknownFamilyError(f"{kind} {key!r} is declared by families {owner!r} and {family.name!r}")
        foreign = [a.name for a in family.aliases if a.family != family.name]
        foreign += [s.name for s in family.shapes if s.family != family.name]
        if foreign:
            raise UnknownFamilyError(f"family {family.name!r} declares {foreign} for another family")


FAMILIES: tuple[ModelFamily, ...] = discover()

#: model_type -> the families describing it (several only for wrappers told apart by ``llm_model_type``)
_MODEL_TYPES = sorted({t for family in FAMILIES for t in family.model_types})
_BY_MODEL_TYPE: dict[str, list[ModelFamily]] = {mt: [f for f in FAMILIES if mt in f.model_types] for mt in _MODEL_TYPES}
_BY_NAME: dict[str, ModelFamily] = {fam.name: fam for fam in FAMILIES}


def family_for(config_or_model: Any) -> ModelFamily:
    """The family describing a model or config, keyed by ``config.model_type`` and bound to the
    config (the sizes its fused layouts read: :meth:`ModelFamily.bind`)."""
    config = getattr(config_or_model, "config", config_or_model)
    model_type = getattr(config, "model_type", None)
    candidates = _BY_MODEL_TYPE.get(str(model_type))
    if not candidates:
        known = ", ".join(sorted(_BY_MODEL_TYPE))
        raise UnknownFamilyError(
            f"no model family describes model_type {model_type!r} (known: {known}). To add one, write "
            "qigbench/models/families/<name>.py with FAMILY = ModelFamily(...) (decoder block path, scaling "
            "groups, vision modules, vision token config keys, aliases, tiny specimen, real shapes): "
            "it is registered by being there."
        )
    # remote-code wrappers (internvl_chat) reuse one model_type for several language models
    llm_config = getattr(config, "llm_config", None)
    llm_type = llm_config.get("model_type") if isinstance(llm_config, dict) else getattr(llm_config, "model_type", None)
    matching = [f for f in candidates if not f.llm_model_type or not llm_type or f.llm_model_type == llm_type]
    if not matching:
        covered = ", ".join(repr(f.llm_model_type) for f in candidates)
        raise UnknownFamilyError(
            f"model_type {model_type!r} with language model {llm_type!r} is not described (families "
            f"{', '.join(repr(f.name) for f in candidates)} cover {covered} only). Add a family file for it under "
            f"qigbench/models/families/ with model_types=({model_type!r},) and llm_model_type={llm_type!r}."
        )
    family = matching[0]
    bound = family.bind(config)
    return _interned(bound)


@cache
def _interned(family: ModelFamily) -> ModelFamily:
    """One object per bound family (the same model loaded twice gets the same family)."""
    return family


def family_named(name: str) -> ModelFamily:
    """The family with this ``ModelFamily.name`` (used by aliases, which know the family before loading).
    Not bound to a config: resolve a fused family's groups with :func:`family_for` of the loaded model."""
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
