"""Q-VLM's layer statistics: how evenly a linear's input spreads over tokens (entropy) and how
strongly it depends on the previous linear's input (the conditional entropy the released code
calls DED).

Both act on the *quantized* input ``X^[B, T, C]``, take ``A = |X^|`` and normalise each channel
over the token axis (pad tokens excluded), then average over samples and channels:

* entropy ``H = mean_{b,c} -sum_t Abar log(Abar + 1e-7)``, with ``Abar`` the L2 normalisation
  (``entropy_norm="l2"``, the released code: *not* a Shannon entropy) or the L1 one (``"l1"``, a
  proper distribution: the uniform one gives ``log T``);
* dependency ``D = mean_{b,c} -sum_t J log(K + 1e-5)`` with ``P``, ``Q`` the L1-normalised previous
  and current inputs, ``J ∝ P Q`` and ``K ∝ Q / (P + 1e-5)``; identical inputs make ``K``
  (almost) uniform, so ``D(X, X) = log T``.

A channel that is zero on every token (dead) would divide 0 by 0 in the released code; here its
normaliser is floored, it contributes 0, and the count is logged.

With ``batch_sizes`` (the rows of each recorded batch) the per-(sample, channel) terms are computed
and summed per batch in float32 and across batches -- and, data-parallel, across ranks -- in
float64, so the mean is the same however the samples are shared out (:mod:`qigbench.parallel.sums`).
Q-VLM's replicated reference pass computes them under :func:`qigbench.parallel.replicated`, where
nothing is reduced.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Literal

import torch

from qigbench import parallel

log = logging.getLogger(__name__)

EntropyNorm = Literal["l1", "l2"]
ENTROPY_EPS = 1e-7  # quant_modules.py:127-130
DEPENDENCY_EPS = 1e-5  # quant_modules.py:113-125


def _magnitudes(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if x.dim() != 3:
        raise ValueError(f"expected a [B, T, C] linear input, got shape {tuple(x.shape)}")
    a = x.detach().abs().float()
    if mask is not None:
        a = a * mask.to(a.device, torch.float32)[..., None]
    return a


def _normalise(a: torch.Tensor, norm: EntropyNorm) -> tuple[torch.Tensor, int]:
    """``a`` normalised over tokens (dim 1) per channel; also the number of dead (b, c) columns."""
    total = a.sum(dim=1, keepdim=True) if norm == "l1" else a.pow(2).sum(dim=1, keepdim=True).sqrt()
    dead = int((total == 0).sum())
    return a / total.clamp_min(torch.finfo(torch.float32).tiny), dead


def _warn_dead(what: str, dead: int, columns: int) -> None:
    if dead:
        log.warning("%s: %d of %d channel columns are zero on every token; they count as 0", what, dead, columns)


def _mean_of_terms(
    terms: Callable[[slice], tuple[torch.Tensor, int]], rows: int, batch_sizes: Sequence[int] | None
) -> tuple[float, int]:
    """The mean of the ``[b, C]`` terms over every sample (and rank), and the dead columns.
    Without ``batch_sizes`` in one process: ``terms.mean()`` as it always was."""
    if batch_sizes is None and not parallel.active():
        values, dead = terms(slice(0, rows))
        return float(values.mean()), dead
    parts, count, dead = [], 0, 0
    for b0, b1 in parallel.batch_spans(batch_sizes, 0, rows):
        values, d = terms(slice(b0, b1))
        parts.append(values.sum())
        count, dead = count + values.numel(), dead + d
    total = parallel.all_reduce_sum(parallel.float64_total(parts))
    return float(total / max(parallel.total(count), 1)), dead


def token_entropy(
    x: torch.Tensor, mask: torch.Tensor | None = None, norm: EntropyNorm = "l1",
    batch_sizes: Sequence[int] | None = None,
) -> float:
    """``H`` of a linear's (quantized) input ``x[B, T, C]``; ``mask[B, T]`` marks the tokens to use."""

    def terms(rows: slice) -> tuple[torch.Tensor, int]:
        p, dead = _normalise(_magnitudes(x[rows], None if mask is None else mask[rows]), norm)
        return -(p * torch.log(p + ENTROPY_EPS)).sum(dim=1), dead

    value, dead = _mean_of_terms(terms, int(x.shape[0]), batch_sizes)
    _warn_dead("entropy", dead, x.shape[0] * x.shape[2])
    return value


def conditional_entropy(
    prev: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None = None, batch_sizes: Sequence[int] | None = None
) -> float:
    """``D(prev -> x)``: both ``[B, T, C]`` of the same shape (e.g. q's and k's input, v's and o's)."""
    if prev.shape != x.shape:
        raise ValueError(f"dependency needs inputs of the same shape, got {tuple(prev.shape)} and {tuple(x.shape)}")
    tiny = torch.finfo(torch.float32).tiny

    def terms(rows: slice) -> tuple[torch.Tensor, int]:
        m = None if mask is None else mask[rows]
        p, dead_p = _normalise(_magnitudes(prev[rows], m), "l1")
        q, dead_q = _normalise(_magnitudes(x[rows], m), "l1")
        joint = p * q
        joint = joint / joint.sum(dim=1, keepdim=True).clamp_min(tiny)
        cond = q / (p + DEPENDENCY_EPS)
        cond = cond / cond.sum(dim=1, keepdim=True).clamp_min(tiny)
        return -(joint * torch.log(cond + DEPENDENCY_EPS)).sum(dim=1), max(dead_p, dead_q)

    value, dead = _mean_of_terms(terms, int(x.shape[0]), batch_sizes)
    _warn_dead("dependency", dead, x.shape[0] * x.shape[2])
    return value


def update_flag(
    previous_score: float | None,
    scores: list[float],
    *,
    block: int,
    first_linear: bool,
    first_call: bool,
    threshold: float | None = None,
    force_every: int = 3,
) -> bool:
    """Whether a linear absorbs this prompt's min/max into its range (quant_modules.py:132-144).

    True when the previous linear's score is at least the threshold (the mean of the scores so far
    in this prompt; a fixed number when ``threshold`` is given: 37 in the first release), on every
    ``force_every``-th decoder block (0-based ``block % force_every == 0`` is the code's
    1-based ``j mod 3 == 1``), for the model's first linear, and on a module's first call."""
    if first_call or first_linear or (force_every > 0 and block % force_every == 0):
        return True
    if previous_score is None or not scores:
        return True
    tau = threshold if threshold is not None else sum(scores) / len(scores)
    return previous_score >= tau
