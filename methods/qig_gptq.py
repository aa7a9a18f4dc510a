"""QIG+GPTQ (paper, Table 5): GPTQ with the Hessian H' = X^T diag(lambda) X, lambda from QIG.

The first implementation of it: the released code's ``igptq`` raises NotImplementedError.
With uniform lambda it is plain GPTQ, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from qigbench.bases.gptq_family import GPTQMethod, GPTQMethodConfig
from qigbench.bases.token_weighting import group_token_weights, make_provider
from qigbench.engine.context import BlockContext, ResolvedGroup
from qigbench.sensitivity.qig_provider import QIGConfig


@dataclass(frozen=True)
class QIGGPTQConfig(GPTQMethodConfig):
    sensitivity: str = "qig"
    qig: QIGConfig = field(default_factory=QIGConfig)


class QIGGPTQ(GPTQMethod):
    name = "qig-gptq"
    config_class = QIGGPTQConfig

    def __init__(self, config: QIGGPTQConfig | None = None) -> None:
        super().__init__(config)
        assert isinstance(self.config, QIGGPTQConfig)
        self.provider = make_provider(self.config.sensitivity, self.config.qig)

    def keeps_quantized_stream(self) -> bool:
        return bool(getattr(self.provider, "wants_quantized_input", False))

    def token_weights(self, ctx: BlockContext, group: ResolvedGroup) -> torch.Tensor | None:
        return group_token_weights(self.provider, ctx, group)
