"""QIG (the paper): the CWE search with per-token weights from Quantization-aware Integrated
Gradients. The sensitivity provider and all its ablation switches (baseline, objective,
clipping, steps, released-code reference behaviour) are the ``qig`` config; ``sensitivity``
swaps the provider for the Table 1 ablations (gradient, attention, leave_one_out, uniform).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from qigbench.engine.attribution import attribution_target
from qigbench.engine.context import BlockContext, ResolvedGroup
from qigbench.engine.cwe import CWEConfig, CWEMethod
from qigbench.sensitivity.base import SensitivityProvider, get_provider
from qigbench.sensitivity.qig import QIGConfig, QIGProvider, SearchCounter


@dataclass(frozen=True)
class QIGMethodConfig(CWEConfig):
    sensitivity: str = "qig"
    qig: QIGConfig = field(default_factory=QIGConfig)


def build_provider(sensitivity: str, qig: QIGConfig) -> SensitivityProvider:
    if sensitivity == "qig":
        # one counter per run: the released code's warm-up counts searches across blocks
        return QIGProvider(qig, counter=SearchCounter())
    return get_provider(sensitivity)


def group_token_weights(
    provider: SensitivityProvider, ctx: BlockContext, group: ResolvedGroup
) -> torch.Tensor:
    result = provider(attribution_target(ctx, group, with_attention=getattr(provider, "name", "") == "attention"))
    ctx.log(group.name, **{f"sens.{k}": v for k, v in result.diagnostics.items() if isinstance(v, (int, float, bool))})
    ctx.artifacts.setdefault("token_weights", {})[group.name] = result.weights.detach().cpu()
    return result.weights


class QIG(CWEMethod):
    name = "qig"
    config_class = QIGMethodConfig

    def __init__(self, config: QIGMethodConfig | None = None) -> None:
        super().__init__(config)
        cfg = self.config
        assert isinstance(cfg, QIGMethodConfig)
        self.provider = build_provider(cfg.sensitivity, cfg.qig)

    def token_weights(self, ctx: BlockContext, group: ResolvedGroup) -> torch.Tensor | None:
        return group_token_weights(self.provider, ctx, group)
