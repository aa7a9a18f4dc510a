"""QIG (the paper): the CWE search with per-token weights from Quantization-aware Integrated
Gradients. The sensitivity provider and all its ablation switches (baseline, objective,
clipping, steps, released-code reference behaviour) are the ``qig`` config; ``sensitivity``
swaps the provider for the Table 1 ablations (gradient, attention, leave_one_out, uniform).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from qigbench.bases.equalization import EqualizationConfig, EqualizationMethod
from qigbench.bases.token_weighting import SensitivityName, group_token_weights, make_provider
from qigbench.engine.context import BlockContext
from qigbench.models.groups import ResolvedGroup
from qigbench.sensitivity.qig_provider import QIGConfig


@dataclass(frozen=True)
class QIGMethodConfig(EqualizationConfig):
    sensitivity: SensitivityName = "qig"
    #: the QIG provider's config (``-o qig.steps=32``); only with ``sensitivity=qig``
    qig: QIGConfig = field(default_factory=QIGConfig)

    only_with: ClassVar[Mapping[str, tuple[str, Any]]] = {"qig": ("sensitivity", "qig")}


class QIG(EqualizationMethod[QIGMethodConfig]):
    name = "qig"

    def __init__(self, config: QIGMethodConfig | None = None) -> None:
        super().__init__(config)
        self.provider = make_provider(self.config.sensitivity, self.config.qig)

    def keeps_quantized_stream(self) -> bool:
        return bool(getattr(self.provider, "wants_quantized_input", False))

    def token_weights(self, ctx: BlockContext, group: ResolvedGroup) -> torch.Tensor | None:
        return group_token_weights(self.provider, ctx, group)
