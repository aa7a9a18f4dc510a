"""Optimisers the methods reuse, all taking token weights lambda[B, T] (``None`` = uniform).

* :mod:`~qigbench.solvers.gptq_solver` / :mod:`~qigbench.solvers.hessian`: GPTQ with the weighted Hessian
  ``H' = 2 X^T diag(lambda) X`` (QIG+GPTQ when lambda comes from QIG);
* :mod:`~qigbench.solvers.scale_search` / :mod:`~qigbench.solvers.clip_search`: channel-wise
  equalisation (AWQ / MBQ / QIG) and AWQ's weight-clip search, with a token-weighted loss;
* :mod:`~qigbench.solvers.migration`: SmoothQuant's migration scales.

Solvers never see a model: tensors, ``nn.Linear`` modules and a ``compared(x) -> y`` callable.
"""

from qigbench.solvers.clip_search import search_clip
from qigbench.solvers.gptq_solver import GPTQConfig, GPTQResult, gptq_quantize
from qigbench.solvers.hessian import HessianAccumulator, weighted_hessian
from qigbench.solvers.migration import activation_absmax, activation_range, search_smooth_alpha, smooth_scales
from qigbench.solvers.scale_search import (
    ScaleResult,
    ScaleSearchConfig,
    activation_mean,
    awq_scales,
    evaluate_scales,
    scaled_linears,
    search_scales,
)
from qigbench.solvers.weights import SolverError, resolve_token_weights

__all__ = [
    "GPTQConfig",
    "GPTQResult",
    "HessianAccumulator",
    "ScaleResult",
    "ScaleSearchConfig",
    "SolverError",
    "activation_absmax",
    "activation_mean",
    "activation_range",
    "awq_scales",
    "evaluate_scales",
    "gptq_quantize",
    "resolve_token_weights",
    "scaled_linears",
    "search_clip",
    "search_scales",
    "search_smooth_alpha",
    "smooth_scales",
    "weighted_hessian",
]
