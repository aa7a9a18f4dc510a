"""SmoothQuant (Xiao et al., 2023): migrate activation outliers into the weights before W-A quantization.

``s_j = max|X_j|^alpha / max_i |W_ij|^(1 - alpha)``, the weight maximum taken over every linear
of the scaling group; the previous op absorbs ``X / s``, the linears ``W * s`` (the same
convention as the CWE scale search, so methods apply both the same way). ``alpha = 0.5`` by
default; :func:`search_smooth_alpha` picks alpha by the token-weighted output loss of the CWE
search instead.

Guards: activation and weight maxima are floored at ``eps`` (a dead channel would otherwise give
``s = 0`` and a division by zero when folding); a channel that no weight reads (all-zero column)
gets ``s = 1`` — any value leaves the product unchanged there, and 1 changes nothing.

To reproduce llm-compressor's scales, pass its statistics: ``act = activation_range(x)``
(channel max - min) and ``weight_factor=2.0``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from qigbench import parallel
from qigbench.quant import QuantFormat
from qigbench.solvers.scale_search import (
    ScaleResult,
    ScaleSearchConfig,
    check_linears,
    evaluate_scales,
    first_argmin,
)
from qigbench.solvers.weights import SolverError, check_inputs
from qigbench.tokens import valid_mask

DEFAULT_ALPHA = 0.5
EPS = 1e-5


def smooth_scales(
    act_absmax: Tensor,
    weights: Sequence[Tensor],
    alpha: float = DEFAULT_ALPHA,
    *,
    weight_factor: float = 1.0,
    eps: float = EPS,
) -> Tensor:
    """Per-input-channel smoothing scales ``[H]`` (float32) for a group of ``[out_i, H]`` weights."""
    if not 0 <= alpha <= 1:
        raise SolverError(f"SmoothQuant alpha must be in [0, 1], got {alpha}; the paper's default is 0.5")
    if len(weights) == 0:
        raise SolverError("smooth_scales needs the weights of at least one linear of the group")
    channels = int(act_absmax.shape[-1])
    for w in weights:
        if w.dim() != 2 or w.shape[1] != channels:
            raise SolverError(
                f"weight of shape {tuple(w.shape)} does not read {channels} channels; pass the [out, in] weights "
                "of the linears fed by the smoothed activation"
            )
    w_max = torch.stack([w.detach().float().abs().amax(dim=0) for w in weights]).amax(dim=0) * weight_factor
    act = act_absmax.detach().float().to(w_max.device)
    s = act.clamp_min(eps).pow(alpha) / w_max.clamp_min(eps).pow(1 - alpha)
    return torch.where(w_max > 0, s, torch.ones_like(s))


def activation_absmax(x: Tensor, token_types: Tensor | None = None) -> Tensor:
    """Per-channel ``max |x|`` over the non-padding tokens (SmoothQuant's statistic), float32 ``[H]``
    (of every rank: a maximum, so the same bits as one process)."""
    flat = _valid_rows(x, token_types)
    return parallel.all_reduce_max(flat.abs().amax(dim=0))


def activation_range(x: Tensor, token_types: Tensor | None = None) -> Tensor:
    """Per-channel ``max x - min x`` over the non-padding tokens (llm-compressor's statistic)."""
    flat = _valid_rows(x, token_types)
    return parallel.all_reduce_max(flat.amax(dim=0)) - parallel.all_reduce_min(flat.amin(dim=0))


def search_smooth_alpha(
    x: Tensor,
    linears: Sequence[nn.Linear],
    compared: Callable[[Tensor], Any],
    fmt: QuantFormat,
    token_weights: Tensor | None = None,
    token_types: Tensor | None = None,
    cfg: ScaleSearchConfig | None = None,
    *,
    alphas: Sequence[float] | None = None,
    act_absmax: Tensor | None = None,
    compared_input: Tensor | None = None,
) -> ScaleResult:
    """Pick SmoothQuant's alpha (default grid: ``cfg.alphas``) by the weighted loss of the CWE search."""
    cfg = cfg if cfg is not None else ScaleSearchConfig()
    check_inputs(x)
    check_linears(linears, int(x.shape[-1]))
    grid = list(alphas) if alphas is not None else cfg.alphas
    if not grid:
        raise SolverError("the SmoothQuant alpha grid is empty; pass alphas=[...] or use the default grid")
    act = act_absmax if act_absmax is not None else activation_absmax(x, token_types)
    weights = [lin.weight for lin in linears]
    candidates = [smooth_scales(act, weights, a) for a in grid]
    inp = x if compared_input is None else compared_input
    losses = evaluate_scales(inp, linears, compared, fmt, candidates, token_weights, token_types, cfg)
    best = first_argmin(losses)
    return ScaleResult(scales=candidates[best], alpha=grid[best], losses=losses, alphas=grid)


def _valid_rows(x: Tensor, token_types: Tensor | None) -> Tensor:
    check_inputs(x)
    flat = x.detach().reshape(-1, x.shape[-1]).float()
    if token_types is not None:
        flat = flat[valid_mask(token_types).reshape(-1).to(flat.device)]
    if flat.shape[0] == 0:
        raise SolverError("every token is padding; SmoothQuant needs at least one real token per channel")
    return flat
