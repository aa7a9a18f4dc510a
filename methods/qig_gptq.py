"""QIG+GPTQ (paper, Table 5): GPTQ with the Hessian H' = X^T diag(lambda) X, lambda from QIG.

The first implementation of it: the released code's ``igptq`` raises NotImplementedError.
With uniform lambda it is plain GPTQ, bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from qigbench.bases.gptq_family import GPTQMethod, GPTQMethodConfig
from qigbench.bases.token_weighting import SensitivityName, group_token_weights, make_provider
from qigbench.engine.context import BlockContext
from qigbench.models.groups import ResolvedGroup
from qigbench.sensitivity.qig_provider import QIGConfig


@dataclass(frozen=True)
class QIGGPTQConfig(GPTQMethodConfig):
    sensitivity: SensitivityName = "qig"
    #: the QIG provider's config (``-o qig.steps=32``); only with ``sensitivity=qig``
    qig: QIGConfig = field(default_factory=QIGConfig)

    only_with: ClassVar[Mapping[str, tuple[str, Any]]] = {"qig": ("sensitivity", "qig")}


class QIGGPTQ(GPTQMethod[QIGGPTQConfig]):
    name = "qig-gptq"

    def __init__(self, config: QIGGPTQConfig | None = None) -> None:
        super().__init__(config)
        self.provider = make_provider(self.config.sensitivity, self.config.qig)

    def keeps_quantized_stream(self) -> bool:
        return bool(getattr(self.provider, "wants_quantized_input", False))

    def token_weights(self, ctx: BlockContext, group: ResolvedGroup) -> torch.Tensor | None:
        return group_token_weights(self.provider, ctx, group)
