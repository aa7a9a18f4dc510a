"""QIG (the paper): the CWE search with per-token weights from Quantization-aware Integrated
Gradients. The sensitivity provider and all its ablation switches (baseline, objective,
clipping, steps, released-code reference behaviour) are the ``qig`` config; ``sensitivity``
swaps the provider for the Table 1 ablations (gradient, attention, leave_one_out, uniform).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from qigbench.bases.equalization import EqualizationConfig, EqualizationMethod
from qigbench.bases.token_weighting import group_token_weights, make_provider
from qigbench.engine.context import BlockContext, ResolvedGroup
from qigbench.sensitivity.qig_provider import QIGConfig


@dataclass(frozen=True)
class QIGMethodConfig(EqualizationConfig):
    sensitivity: str = "qig"
    qig: QIGConfig = field(default_factory=QIGConfig)


class QIG(EqualizationMethod):
    name = "qig"
    config_class = QIGMethodConfig

    def __init__(self, config: QIGMethodConfig | None = None) -> None:
        super().__init__(config)
        assert isinstance(self.config, QIGMethodConfig)
        self.provider = make_provider(self.config.sensitivity, self.config.qig)

    def keeps_quantized_stream(self) -> bool:
        return bool(getattr(self.provider, "wants_quantized_input", False))

    def token_weights(self, ctx: BlockContext, group: ResolvedGroup) -> torch.Tensor | None:
        return group_token_weights(self.provider, ctx, group)
