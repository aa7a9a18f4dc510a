"""Outlier control for token scores (paper Sec. 3.3 eq. 4, and the Table A1 ablation).

Pure functions over ``scores[B, T]`` and a boolean ``mask[B, T]`` of the positions that count
(non-padding). Statistics are taken per row over masked positions only; masked positions are
returned unchanged. None of them renormalises — the caller does (see ``finalize_weights``).
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

from qigbench.sensitivity.errors import SensitivityError

ClippingName = Literal["none", "top5-zero", "top5-mean", "iqr"]
CLIPPING_NAMES: tuple[str, ...] = get_args(ClippingName)

#: Tukey's fence multiplier.
TUKEY_K = 1.5


def iqr_fences(scores: Tensor, mask: Tensor, k: float = TUKEY_K) -> tuple[Tensor, Tensor]:
    """Per-row Tukey fences ``[Q1 - k IQR, Q3 + k IQR]`` over the masked entries, each ``[B, 1]``.

    Quartiles use linear interpolation between order statistics (``torch.quantile``'s default,
    the same as numpy's). A row with no masked entries gets fences ``(-inf, inf)``.
    """
    data = scores.float().masked_fill(~mask, float("nan"))
    q = torch.nanquantile(data, torch.tensor([0.25, 0.75], device=scores.device), dim=-1, keepdim=True)
    q1, q3 = q[0], q[1]
    iqr = q3 - q1
    lo, hi = q1 - k * iqr, q3 + k * iqr
    empty = ~mask.any(dim=-1, keepdim=True)
    lo = torch.where(empty, torch.full_like(lo, -float("inf")), lo)
    hi = torch.where(empty, torch.full_like(hi, float("inf")), hi)
    return lo, hi


def iqr_clip(scores: Tensor, mask: Tensor, k: float = TUKEY_K) -> Tensor:
    """Clamp each row's masked entries to its Tukey fences; entries inside are left bit-identical."""
    lo, hi = iqr_fences(scores, mask, k)
    clipped = torch.minimum(torch.maximum(scores, lo.to(scores.dtype)), hi.to(scores.dtype))
    return torch.where(mask, clipped, scores)


def _top_k_positions(scores: Tensor, mask: Tensor, k: int) -> Tensor:
    """Boolean ``[B, T]``: the ``k`` largest masked entries of each row (fewer if the row is shorter)."""
    ranked = scores.float().masked_fill(~mask, -float("inf"))
    k_eff = min(k, scores.shape[-1])
    idx = ranked.topk(k_eff, dim=-1).indices
    chosen = torch.zeros_like(mask).scatter(-1, idx, True)
    return chosen & mask


def top5_zero(scores: Tensor, mask: Tensor, k: int = 5) -> Tensor:
    """Set each row's ``k`` largest scores to zero (Table A1 "Top5 zero")."""
    top = _top_k_positions(scores, mask, k)
    return scores.masked_fill(top, 0.0)


def top5_mean(scores: Tensor, mask: Tensor, k: int = 5) -> Tensor:
    """Replace each row's ``k`` largest scores with the row mean over all its (masked) tokens.

    The mean is taken *before* replacement, over every non-padding token ("the global mean
    computed over all token sensitivities", paper App. C).
    """
    top = _top_k_positions(scores, mask, k)
    m = mask.to(scores.dtype)
    mean = (scores * m).sum(dim=-1, keepdim=True) / m.sum(dim=-1, keepdim=True).clamp_min(1.0)
    return torch.where(top, mean.expand_as(scores), scores)


def apply_clipping(name: str, scores: Tensor, mask: Tensor) -> Tensor:
    """Dispatch on the config value; ``"none"`` returns the scores unchanged."""
    if name == "none":
        return scores
    if name == "iqr":
        return iqr_clip(scores, mask)
    if name == "top5-zero":
        return top5_zero(scores, mask)
    if name == "top5-mean":
        return top5_mean(scores, mask)
    raise SensitivityError(f"unknown clipping {name!r}; choose one of {', '.join(CLIPPING_NAMES)}")
