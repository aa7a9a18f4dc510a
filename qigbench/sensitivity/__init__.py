"""Token-weight providers: which tokens matter for a block's quantization error.

``get_provider(name, **config)`` builds one: ``uniform``, ``qig`` (the paper), and the ablation
proxies ``gradient``, ``attention``, ``leave_one_out``, ``modality`` (MBQ).
"""

from qigbench.sensitivity.attention import AttentionConfig, AttentionProvider, received_attention
from qigbench.sensitivity.base import (
    AttributionTarget,
    SensitivityError,
    SensitivityProvider,
    TokenWeights,
    finalize_weights,
    register_provider,
    uniform_weights,
)
from qigbench.sensitivity.clipping import apply_clipping, iqr_clip, iqr_fences, top5_mean, top5_zero
from qigbench.sensitivity.gradient import GradientConfig, GradientProvider
from qigbench.sensitivity.heatmap import SensitivityRecorder, plot_sensitivity_heatmap
from qigbench.sensitivity.ig import IGResult, integrate, integrate_adaptive, integrated_gradients, quadrature_nodes
from qigbench.sensitivity.leave_one_out import LeaveOneOutConfig, LeaveOneOutProvider, leave_one_out_scores
from qigbench.sensitivity.modality import (
    ModalityConfig,
    ModalityProvider,
    mbq_coefficients,
    mbq_ratios,
    modality_weights,
)
from qigbench.sensitivity.qig_provider import QIGConfig, QIGProvider, SearchCounter, qig_objective
from qigbench.sensitivity.registry import available_providers, get_provider
from qigbench.sensitivity.uniform import UniformProvider

__all__ = [
    "AttentionConfig",
    "AttentionProvider",
    "AttributionTarget",
    "GradientConfig",
    "GradientProvider",
    "IGResult",
    "LeaveOneOutConfig",
    "LeaveOneOutProvider",
    "ModalityConfig",
    "ModalityProvider",
    "QIGConfig",
    "QIGProvider",
    "SearchCounter",
    "SensitivityError",
    "SensitivityProvider",
    "SensitivityRecorder",
    "TokenWeights",
    "UniformProvider",
    "apply_clipping",
    "available_providers",
    "finalize_weights",
    "get_provider",
    "integrate",
    "integrate_adaptive",
    "integrated_gradients",
    "iqr_clip",
    "iqr_fences",
    "leave_one_out_scores",
    "mbq_coefficients",
    "mbq_ratios",
    "modality_weights",
    "plot_sensitivity_heatmap",
    "qig_objective",
    "quadrature_nodes",
    "received_attention",
    "register_provider",
    "top5_mean",
    "top5_zero",
    "uniform_weights",
]
