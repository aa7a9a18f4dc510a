"""MBQ's modality-level weights (Li et al., CVPR 2025), as token weights.

MBQ weighs the scale-search error of answer (caption) tokens by 1 and of vision tokens by a
per-layer ratio ``r = g_vision / g_text`` of mean output-gradient magnitudes from one
forward/backward of the caption loss; all other tokens get 0. Its loss over a batch is

    L_MBQ = (sum_{answer} |d| + r * sum_{vision} |d|) / (H * (N_a + N_v)),

with ``|d|`` the elementwise error summed over the H channels and N_a, N_v counted over the batch.
With ``e_{b,t} = mean_h |d_{b,t,h}|`` and the coefficients of :func:`mbq_coefficients`,
``c_{b,t} = w_{b,t} / (N_a + N_v)`` (``w`` = 1 answer, r vision, 0 else), this is *exactly*
``L_MBQ = sum_{b,t} c_{b,t} e_{b,t}``.

The solver contract wants rows summing to 1. :func:`modality_weights` returns
``lambda_{b,t} = w_{b,t} / (N_a,b + r N_v,b)``; then ``sum_t lambda_{b,t} e_{b,t}`` is row b's MBQ
loss times the constant ``(N_a + N_v) / (N_a,b + r N_v,b)``. For one sample, or samples with the
same counts, the arg-min over scales is therefore identical to MBQ's; when counts differ across
rows, pass ``mbq_coefficients`` to a solver that accepts un-normalised weights to reproduce MBQ
exactly.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from qigbench.sensitivity.base import (
    AttributionTarget,
    SensitivityError,
    TokenWeights,
    finalize_weights,
    register_provider,
)
from qigbench.tokens import TokenType, valid_mask


def _masks(token_types: Tensor, answer_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Float (answer, vision) indicators; a vision position is never an answer token."""
    if answer_mask.shape != token_types.shape:
        raise SensitivityError(
            f"answer_mask {tuple(answer_mask.shape)} must match token_types {tuple(token_types.shape)}"
        )
    vision = (token_types == TokenType.VISION).float()
    answer = (answer_mask.bool() & valid_mask(token_types) & (token_types != TokenType.VISION)).float()
    return answer, vision


def _token_factors(token_types: Tensor, answer_mask: Tensor, ratio: float | Tensor) -> Tensor:
    """``w[B, T]``: 1 on answer tokens, r on vision tokens, 0 elsewhere (and on padding)."""
    answer, vision = _masks(token_types, answer_mask)
    r = torch.as_tensor(ratio, dtype=torch.float32, device=token_types.device)
    return answer + r * vision


def mbq_coefficients(token_types: Tensor, answer_mask: Tensor, ratio: float | Tensor) -> Tensor:
    """``c[B, T] = w / (N_a + N_v)`` (counts over the whole batch): ``sum c * e`` is MBQ's loss exactly."""
    answer, vision = _masks(token_types, answer_mask)
    w = _token_factors(token_types, answer_mask, ratio)
    return w / (answer.sum() + vision.sum()).clamp_min(1.0)


def modality_weights(token_types: Tensor, answer_mask: Tensor, ratio: float | Tensor) -> Tensor:
    """Row-normalised MBQ weights ``lambda[B, T]`` (answer 1, vision r, others 0); see module docstring.

    A row without answer or vision tokens (or r = 0 and no answer tokens) falls back to uniform.
    """
    w = _token_factors(token_types, answer_mask, ratio)
    return finalize_weights(w, token_types, "none").weights


def mbq_ratios(
    grads_vision: Tensor | Sequence[float],
    grads_text: Tensor | Sequence[float],
    floor: Literal["median"] | None = None,
) -> Tensor:
    """Per-layer ``r_l = g_vision,l / g_text,l`` from mean |dL/d output| over vision and answer tokens.

    ``floor="median"`` reproduces the released MBQ code: ``r_l = max(r_l, median_l r)`` (torch's
    lower median for an even number of layers).
    """
    gv = torch.as_tensor(grads_vision, dtype=torch.float32)
    gt = torch.as_tensor(grads_text, dtype=torch.float32)
    if gv.shape != gt.shape or gv.dim() != 1:
        raise SensitivityError(
            f"grads_vision {tuple(gv.shape)} and grads_text {tuple(gt.shape)} must be 1-D per-layer vectors of "
            "the same length"
        )
    if (gt <= 0).any() or not torch.isfinite(gt).all():
        raise SensitivityError(
            "a text gradient magnitude is zero or not finite, so the vision/text ratio is undefined; check that "
            "the calibration samples have answer tokens with loss (labels not all -100)"
        )
    r = gv / gt
    if floor == "median":
        r = torch.maximum(r, r.median())
    elif floor is not None:
        raise SensitivityError(f"floor={floor!r}; use 'median' or None")
    return r


@dataclass(frozen=True)
class ModalityConfig:
    #: per-block ratios for the attention groups (qkv, o) and the MLP groups (gate/up, down)
    attention_ratios: Sequence[float] = ()
    mlp_ratios: Sequence[float] = ()
    attention_groups: tuple[str, ...] = ("qkv", "o")


class ModalityProvider:
    """MBQ weights for a target: picks the block's attention or MLP ratio by the target's group name."""

    name = "modality"

    def __init__(self, config: ModalityConfig | None = None) -> None:
        self.config = config or ModalityConfig()

    def ratio_for(self, target: AttributionTarget) -> float:
        ratios = (
            self.config.attention_ratios if target.group in self.config.attention_groups else self.config.mlp_ratios
        )
        if target.block_index >= len(ratios):
            raise SensitivityError(
                f"no MBQ ratio for block {target.block_index} (group {target.group!r}); compute them with mbq_ratios "
                "from one forward/backward of the caption loss and pass attention_ratios / mlp_ratios for every block"
            )
        return float(ratios[target.block_index])

    def __call__(self, target: AttributionTarget) -> TokenWeights:
        t0 = time.perf_counter()
        if target.answer_mask is None:
            raise SensitivityError("MBQ weights need AttributionTarget.answer_mask (the caption tokens with loss)")
        r = self.ratio_for(target)
        w = _token_factors(target.token_types, target.answer_mask, r)
        out = finalize_weights(w, target.token_types, "none", diagnostics={"ratio": r}, where=target.where)
        out.diagnostics["seconds"] = time.perf_counter() - t0
        return out


@register_provider("modality")
def make_modality(**config: Any) -> ModalityProvider:
    return ModalityProvider(ModalityConfig(**config))
