"""QIG (the paper): the channel-wise-equalisation (CWE) scale search with per-token weights from
Quantization-aware Integrated Gradients. The sensitivity provider and all its ablation switches
(baseline, objective, clipping, steps, released-code reference behaviour) are the ``qig`` config;
``sensitivity`` swaps the provider for the Table 1 ablations (gradient, attention, leave_one_out,
uniform).
"""

from __future__ import annotations

from dataclasses import dataclass

from qigbench.bases.equalization import EqualizationConfig, EqualizationMethod
from qigbench.bases.token_weighting import ProviderWeighted, SensitivityChoice


@dataclass(frozen=True)
class QIGMethodConfig(SensitivityChoice, EqualizationConfig):
    pass


class QIG(ProviderWeighted, EqualizationMethod[QIGMethodConfig]):
    name = "qig"
