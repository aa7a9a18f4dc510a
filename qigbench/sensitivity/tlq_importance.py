"""TLQ's token-level importance (Shang et al., arXiv 2602.07899): per-token gradient magnitudes
at a block's (or module's) output, folded into the solver's per-token loss as lambda, with an
optional token-level selection (only the top fraction of the pool's tokens keeps any weight).

The paper's equations were not retrievable; every choice below is an assumption of
``reference/q-vlm-and-tlq.md`` section 2 (A6-A10), exposed as an option:

* score ``s_{b,t} = mean_h |dL/dY_{b,t,h}|`` (``statistic="abs"``, A8) or ``mean_h (dL/dY)^2``
  (``"fisher"``), with ``L`` the answer-token cross-entropy of the fp model (A6);
* selection (A10): rank every non-pad token of the calibration pool and keep the top
  ``selection`` fraction; the others get lambda 0 (they still take part in the forward pass);
* normalisation (A9): per sample to sum 1 over non-pad tokens — the harness's solver contract,
  whose uniform weights are ``1/T`` (the spec's mean-1 convention differs from it by a per-sample
  constant only); ``floor`` lifts zero-importance tokens (causal masking, pitfall 1) to that
  fraction of the row mean; ``clipping`` applies QIG's score clipping (pitfall 2).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from qigbench.sensitivity.base import AttributionTarget, TokenWeights, finalize_weights
from qigbench.sensitivity.clipping import ClippingName
from qigbench.sensitivity.errors import SensitivityError
from qigbench.tokens import valid_mask

#: per-token statistic of the output gradients: mean |g| or mean g^2 (Fisher)
TLQStatistic = Literal["abs", "fisher"]


@dataclass(frozen=True)
class TLQImportanceConfig:
    statistic: TLQStatistic = "abs"
    selection: float = 1.0  # fraction of the pool's tokens that keep a weight (1 = weighting only)
    floor: float = 0.0  # zero-importance tokens get floor * row mean (0 = pure selection)
    clipping: ClippingName = "none"

    def __post_init__(self) -> None:
        if self.statistic not in ("abs", "fisher"):
            raise SensitivityError(f"TLQ statistic {self.statistic!r} is unknown; use abs or fisher")
        if not 0.0 < self.selection <= 1.0:
            raise SensitivityError(f"TLQ selection ratio must be in (0, 1], got {self.selection}")
        if self.floor < 0.0:
            raise SensitivityError(f"TLQ floor must be >= 0, got {self.floor}")


def select_tokens(scores: Tensor, token_types: Tensor, ratio: float) -> Tensor:
    """``[N, T]`` bool: the top ``ratio`` fraction of the pool's non-pad tokens by score."""
    mask = valid_mask(token_types)
    if ratio >= 1.0:
        return mask
    valid = scores[mask]
    k = max(1, math.ceil(ratio * valid.numel()))
    top = torch.topk(valid.float(), k).indices
    keep = torch.zeros(valid.numel(), dtype=torch.bool, device=scores.device)
    keep[top] = True
    out = torch.zeros_like(mask)
    out[mask] = keep
    return out


def tlq_token_weights(scores: Tensor, token_types: Tensor, config: TLQImportanceConfig) -> TokenWeights:
    """Raw per-token scores ``[N, T]`` -> lambda (sum 1 per sample with any selected token)."""
    raw = scores.detach().float().clamp_min(0.0)
    mask = valid_mask(token_types)
    if config.floor > 0.0:
        mean = (raw * mask).sum(dim=-1, keepdim=True) / mask.sum(dim=-1, keepdim=True).clamp_min(1)
        raw = torch.maximum(raw, config.floor * mean)
    selected = select_tokens(raw, token_types, config.selection)
    kept = torch.where(selected, raw, torch.zeros_like(raw))
    # a sample none of whose tokens was selected contributes nothing (placeholder scores, zeroed below)
    empty = ~selected.any(dim=-1) if config.selection < 1.0 else torch.zeros_like(selected[:, 0])
    kept[empty] = mask[empty].float()
    diag: dict[str, object] = {
        "selected_fraction": float(selected.sum()) / max(int(mask.sum()), 1),
        "samples_without_selected_tokens": int(empty.sum()),
    }
    out = finalize_weights(kept, token_types, config.clipping, diagnostics=diag)
    out.weights[empty] = 0.0
    return out


class TLQImportanceProvider:
    """The ``tlq-gradient`` provider: lambda for a block's group from precomputed per-token
    gradient scores (``scores[block][key] -> [N, T]``; ``key`` is ``""`` for the block output or a module name)."""

    name = "tlq-gradient"

    def __init__(self, scores: Mapping[int, Mapping[str, Tensor]], config: TLQImportanceConfig | None = None) -> None:
        self.scores = scores
        self.config = config or TLQImportanceConfig()

    def weights(self, block: int, key: str, token_types: Tensor) -> TokenWeights:
        try:
            s = self.scores[block][key]
        except KeyError as err:
            raise SensitivityError(f"no TLQ gradient scores for block {block}, {key!r}; was prepare() run?") from err
        return tlq_token_weights(s.to(token_types.device), token_types, self.config)

    def __call__(self, target: AttributionTarget) -> TokenWeights:
        return self.weights(target.block_index, "", target.token_types)
