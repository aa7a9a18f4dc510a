"""The unweighted provider: lambda = 1 / (non-padding tokens), the definition every solver shares."""

from __future__ import annotations

from typing import Any

from qigbench.sensitivity.base import AttributionTarget, TokenWeights, register_provider, uniform_weights


class UniformProvider:
    name = "uniform"

    def __call__(self, target: AttributionTarget) -> TokenWeights:
        return uniform_weights(target.token_types)


@register_provider("uniform")
def make_uniform(**config: Any) -> UniformProvider:
    if config:
        from qigbench.sensitivity.base import SensitivityError

        raise SensitivityError(f"the uniform provider takes no options, got {sorted(config)}; drop them")
    return UniformProvider()
