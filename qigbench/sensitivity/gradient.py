"""Token-gradient sensitivity (paper Table 1, "gradient-based, token level").

score_t = mean_h |dL/dx_{t,h}| at the cached input, with L the QIG error ``sum_t E_t`` by default
or any scalar loss of the block input. One forward/backward: the cheapest token-level signal, and
the one the paper finds misaligned with quantization error — kept as an ablation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from qigbench.sensitivity.base import AttributionTarget, TokenWeights, finalize_weights, register_provider
from qigbench.sensitivity.clipping import ClippingName
from qigbench.sensitivity.qig_provider import QIGConfig, qig_objective


@dataclass(frozen=True)
class GradientConfig:
    clipping: ClippingName = "none"
    #: x[B, T, H] -> scalar; None means the QIG error G(x) = sum_{b,t} mean_h |f_fp(x) - f_q(x)|
    loss_fn: Callable[[Tensor], Tensor] | None = None


class GradientProvider:
    name = "gradient"

    def __init__(self, config: GradientConfig | None = None) -> None:
        self.config = config or GradientConfig()

    def __call__(self, target: AttributionTarget) -> TokenWeights:
        t0 = time.perf_counter()
        diag: dict[str, Any] = {"loss": "qig_error" if self.config.loss_fn is None else "custom"}
        if self.config.loss_fn is not None:  # a custom loss sees the whole batch: no streaming
            raw = _input_gradient(self.config.loss_fn, target.x)
        else:  # the QIG error is a sum over rows: stream sample spans under the memory budget
            spans, _ = target.chunking(1)
            parts = []
            for a, b in spans:
                sub = target.rows(a, b)
                G = qig_objective(sub, QIGConfig())
                parts.append(_input_gradient(lambda x, G=G: G(x).sum(), sub.x))  # type: ignore[misc]
            raw = torch.cat(parts, dim=0)
            diag["sample_chunks"] = len(spans)
        out = finalize_weights(raw, target.token_types, self.config.clipping, diagnostics=diag, where=target.where)
        diag["seconds"] = time.perf_counter() - t0
        return out


def _input_gradient(loss_fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``mean_h |dL/dx|`` per token, ``[B, T]``."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(loss_fn(x), x)
    return grad.abs().float().mean(dim=-1)


@register_provider("gradient")
def make_gradient(**config: Any) -> GradientProvider:
    return GradientProvider(GradientConfig(**config))
