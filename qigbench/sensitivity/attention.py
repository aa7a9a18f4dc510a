"""Attention-based sensitivity (paper Table 1, "attention-based, token level").

A token's score is the attention it *receives*: probabilities ``[B, heads, Tq, Tk]`` averaged
over heads and over the non-padding queries, giving one value per key token. Prone to attention
sinks (a few tokens receive most of the mass), which is why the paper finds it unstable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from qigbench.sensitivity.base import (
    AttributionTarget,
    SensitivityError,
    TokenWeights,
    finalize_weights,
    register_provider,
)
from qigbench.sensitivity.clipping import ClippingName
from qigbench.tokens import valid_mask


def received_attention(probs: Tensor, token_types: Tensor) -> Tensor:
    """``[B, Tk]``: mean over heads and non-padding queries of ``probs[B, heads, Tq, Tk]``."""
    if probs.dim() != 4 or probs.shape[-1] != token_types.shape[-1] or probs.shape[0] != token_types.shape[0]:
        raise SensitivityError(
            f"attention probabilities must be [B, heads, T, T] matching token_types {tuple(token_types.shape)}, "
            f"got {tuple(probs.shape)}; capture them with output_attentions=True (eager attention)"
        )
    q = valid_mask(token_types).to(probs.dtype)  # [B, Tq]
    per_query = probs.float().mean(dim=1)  # [B, Tq, Tk]
    return (per_query * q[:, :, None]).sum(dim=1) / q.sum(dim=1, keepdim=True).clamp_min(1.0)


@dataclass(frozen=True)
class AttentionConfig:
    clipping: ClippingName = "none"
    #: target -> [B, heads, T, T]; None means use ``target.attention_probs``
    attention_fn: Callable[[AttributionTarget], Tensor] | None = None


class AttentionProvider:
    name = "attention"

    def __init__(self, config: AttentionConfig | None = None) -> None:
        self.config = config or AttentionConfig()

    def __call__(self, target: AttributionTarget) -> TokenWeights:
        t0 = time.perf_counter()
        if self.config.attention_fn is None and target.attention_probs is None and target.attention_rows is not None:
            # streamed: each span's probabilities [span, heads, T, T] are reduced before the next
            spans, _ = target.chunking(1)
            rows = target.attention_rows
            raw = torch.cat([received_attention(rows(a, b).detach(), target.token_types[a:b]) for a, b in spans])
            out = finalize_weights(raw, target.token_types, self.config.clipping)
            out.diagnostics["seconds"] = time.perf_counter() - t0
            out.diagnostics["sample_chunks"] = len(spans)
            return out
        probs = self.config.attention_fn(target) if self.config.attention_fn else target.attention_probs
        if probs is None:
            raise SensitivityError(
                "the attention provider needs attention probabilities: set AttributionTarget.attention_probs "
                "(or attention_rows) "
                "or pass attention_fn=... in its config"
            )
        raw = received_attention(probs.detach(), target.token_types)
        out = finalize_weights(raw, target.token_types, self.config.clipping, where=target.where)
        out.diagnostics["seconds"] = time.perf_counter() - t0
        return out


@register_provider("attention")
def make_attention(**config: Any) -> AttentionProvider:
    return AttentionProvider(AttentionConfig(**config))
