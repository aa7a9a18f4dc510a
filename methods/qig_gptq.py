"""QIG+GPTQ (paper, Table 5): GPTQ with the Hessian H' = X^T diag(lambda) X, lambda from QIG.

The first implementation of it: the released code's ``igptq`` raises NotImplementedError.
With uniform lambda it is plain GPTQ, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

from qigbench.bases.gptq_family import GPTQMethod, GPTQMethodConfig
from qigbench.bases.token_weighting import ProviderWeighted, SensitivityChoice


@dataclass(frozen=True)
class QIGGPTQConfig(SensitivityChoice, GPTQMethodConfig):
    pass


class QIGGPTQ(ProviderWeighted, GPTQMethod[QIGGPTQConfig]):
    name = "qig-gptq"
