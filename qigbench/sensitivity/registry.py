"""Find a token-weight provider by name: the built-in providers are imported here, so looking one up
never depends on who imported what first (providers register themselves with
``base.register_provider``; this module is the one place that lists their modules)."""

from __future__ import annotations

from typing import Any

from qigbench.sensitivity.attention import AttentionProvider
from qigbench.sensitivity.base import _REGISTRY, SensitivityError, SensitivityProvider
from qigbench.sensitivity.gradient import GradientProvider
from qigbench.sensitivity.leave_one_out import LeaveOneOutProvider
from qigbench.sensitivity.modality import ModalityProvider
from qigbench.sensitivity.qig_provider import QIGProvider
from qigbench.sensitivity.uniform import UniformProvider

#: the built-in providers (each registered under its name by ``base.register_provider``)
BUILT_IN = (AttentionProvider, GradientProvider, LeaveOneOutProvider, ModalityProvider, QIGProvider, UniformProvider)


def available_providers() -> list[str]:
    return sorted(_REGISTRY)


def get_provider(name: str, **config: Any) -> SensitivityProvider:
    """Build a provider by name, e.g. ``get_provider("qig", steps=16, clipping="top5-mean")``."""
    if name not in _REGISTRY:
        raise SensitivityError(
            f"unknown sensitivity provider {name!r}; choose one of {', '.join(available_providers())}"
        )
    try:
        return _REGISTRY[name](**config)
    except TypeError as exc:
        raise SensitivityError(f"bad config for sensitivity provider {name!r}: {exc}; check the option names") from exc
