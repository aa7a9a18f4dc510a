"""Leave-one-out perturbation sensitivity (paper Table 1, "perturbation-based, token level").

For each token t, replace ``x_t`` by its reference (``x^q_t``, or 0 without one) and measure the
change of the sample's total quantization error ``G = sum_t mean_h |f_fp - f_q|``:
``score_t = |G(x with x_t replaced) - G(x)|``. The best Table 1 proxy, and the most expensive
(T forwards per sample, the paper's Table 6 "leave-one-out" row) — batched here in chunks of
perturbed copies stacked on the batch dimension.

Where the compared module is token-wise (:attr:`AttributionTarget.token_wise`: an MLP or a linear,
activations quantized per token or not at all), ``G(x) = sum_t e_t(x_t)`` with each term depending
on its own token only, so replacing ``x_t`` changes term t alone and
``score_t = |e_t(reference_t) - e_t(x_t)|`` exactly: two forwards per sample instead of ``T + 1``.
That shortcut cannot change the result (it is the same number without the cancellation of two
sums), so it is on by default (``token_wise=True``); a property test holds it to the per-token loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from qigbench.sensitivity.base import AttributionTarget, TokenWeights, finalize_weights, register_provider
from qigbench.sensitivity.clipping import ClippingName
from qigbench.sensitivity.qig_provider import QIGConfig, qig_objective, qig_token_objective


@dataclass(frozen=True)
class LeaveOneOutConfig:
    clipping: ClippingName = "none"
    #: perturbed copies per forward call; None: as many as the memory budget allows
    chunk_size: int | None = None
    #: on a token-wise target, score every token from two forwards per sample (exact; see above)
    token_wise: bool = True


@torch.no_grad()
def leave_one_out_scores(G_fn: Any, x: Tensor, reference: Tensor, chunk_size: int = 16) -> Tensor:
    """``[B, T]``: ``|G(x with token t set to reference_t) - G(x)|`` for every t."""
    B, T, _ = x.shape
    g0 = G_fn(x).float()  # [B]
    out = torch.empty(B, T, device=x.device, dtype=torch.float32)
    for start in range(0, T, chunk_size):
        ts = torch.arange(start, min(start + chunk_size, T), device=x.device)
        k = ts.numel()
        xs = x.unsqueeze(0).repeat(k, 1, 1, 1)  # [k, B, T, H], copy j perturbs token ts[j]
        xs[torch.arange(k, device=x.device), :, ts] = reference[:, ts].transpose(0, 1)
        g = G_fn(xs.reshape(k * B, T, -1)).float().view(k, B)
        out[:, start : start + k] = (g - g0).abs().T
    return out


@torch.no_grad()
def token_wise_scores(e_fn: Any, x: Tensor, reference: Tensor) -> Tensor:
    """``[B, T]``: ``|e(reference)_t - e(x)_t|``, the leave-one-out scores when ``e``'s term t
    depends on token t alone (then it equals :func:`leave_one_out_scores` of ``G = sum_t e_t``)."""
    return (e_fn(reference).float() - e_fn(x).float()).abs()


class LeaveOneOutProvider:
    name = "leave_one_out"

    def __init__(self, config: LeaveOneOutConfig | None = None) -> None:
        self.config = config or LeaveOneOutConfig()

    def __call__(self, target: AttributionTarget) -> TokenWeights:
        t0 = time.perf_counter()
        ref = target.x_q if target.x_q is not None else torch.zeros_like(target.x)
        T = int(target.x.shape[1])
        token_wise = self.config.token_wise and target.token_wise
        if token_wise:  # the input and its reference, one sample span at a time
            spans, per_call = target.chunking(1)
        else:
            spans, per_call = target.chunking(T, self.config.chunk_size)
        parts = []
        for a, b in spans:  # samples in spans, perturbed copies in chunks: rows never interact
            sub = target.rows(a, b)
            x, r = sub.x.detach(), ref[a:b].detach()
            if token_wise:
                parts.append(token_wise_scores(qig_token_objective(sub, QIGConfig()), x, r))
            else:
                parts.append(leave_one_out_scores(qig_objective(sub, QIGConfig()), x, r, per_call))
        raw = torch.cat(parts, dim=0)
        out = finalize_weights(raw, target.token_types, self.config.clipping, where=target.where)
        out.diagnostics["sample_chunks"], out.diagnostics["copies_per_call"] = len(spans), per_call
        out.diagnostics["shortcut_token_wise"] = token_wise
        out.diagnostics["forwards_per_sample"] = 2 if token_wise else T + 1
        out.diagnostics["seconds"] = time.perf_counter() - t0
        out.diagnostics["reference"] = "quantized" if target.x_q is not None else "zero"
        return out


@register_provider("leave_one_out")
def make_leave_one_out(**config: Any) -> LeaveOneOutProvider:
    return LeaveOneOutProvider(LeaveOneOutConfig(**config))
