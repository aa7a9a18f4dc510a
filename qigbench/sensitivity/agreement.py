"""How closely two sets of token weights agree: per-sample Spearman rank correlation and |d-lambda|.

A variant of a token-weight provider (fewer path points, another quadrature, adaptive stopping) is
worth offering only if it ranks tokens like the method's default and moves no weight by much.
Both are measured per calibration sample over its non-padding tokens (padding is 0 in every
lambda, so it would only inflate the correlation), and summarised over samples and groups as the
minimum and mean Spearman and the largest absolute difference of any one weight.

Ties (IQR clipping sets every outlier to the same fence value) get the mean of their ranks, so a
sample whose weights are all equal correlates 1 with itself and 0 with anything that varies.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from qigbench.sensitivity.errors import SensitivityError
from qigbench.tokens import valid_mask


def average_ranks(values: Tensor) -> Tensor:
    """Ranks 0..n-1 of a 1-D tensor, ties sharing the mean of their ranks (float64)."""
    v = values.detach().double().flatten()
    n = v.numel()
    if n == 0:
        return v
    order = torch.argsort(v, stable=True)
    sorted_v = v[order]
    # run boundaries of equal values; each run gets the mean of the positions it spans
    starts = torch.ones(n, dtype=torch.bool)
    starts[1:] = sorted_v[1:] != sorted_v[:-1]
    run = torch.cumsum(starts.long(), dim=0) - 1
    counts = torch.bincount(run).double()
    first = torch.cumsum(counts, dim=0) - counts
    mean_rank = first + (counts - 1) / 2
    ranks = torch.empty(n, dtype=torch.float64)
    ranks[order] = mean_rank[run]
    return ranks


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman's rank correlation of two equally long 1-D tensors (1.0 when both are constant,
    0.0 when exactly one is)."""
    if a.numel() != b.numel():
        raise SensitivityError(f"spearman needs equally long vectors, got {a.numel()} and {b.numel()}")
    ra, rb = average_ranks(a), average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    na, nb = float(ra.norm()), float(rb.norm())
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    return float((ra * rb).sum()) / (na * nb)


@dataclass(frozen=True)
class Agreement:
    """Per-sample Spearman over real tokens and the largest |d-lambda|, for one or many groups."""

    spearman: tuple[float, ...]
    max_abs_diff: float

    @property
    def spearman_min(self) -> float:
        return min(self.spearman) if self.spearman else 1.0

    @property
    def spearman_mean(self) -> float:
        return sum(self.spearman) / len(self.spearman) if self.spearman else 1.0

    def meets(self, min_spearman: float = 0.99, max_diff: float = 1e-3) -> bool:
        return self.spearman_min >= min_spearman and self.max_abs_diff <= max_diff


def agreement(reference: Tensor, other: Tensor, token_types: Tensor) -> Agreement:
    """How ``other`` lambda ``[B, T]`` agrees with ``reference`` on every sample's real tokens."""
    if reference.shape != other.shape or tuple(reference.shape) != tuple(token_types.shape):
        raise SensitivityError(
            f"token weights {tuple(reference.shape)} and {tuple(other.shape)} must match token types "
            f"{tuple(token_types.shape)}"
        )
    valid = valid_mask(token_types)
    rhos = tuple(spearman(reference[n][valid[n]], other[n][valid[n]]) for n in range(reference.shape[0]))
    diff = float((reference.double() - other.double()).abs().max()) if reference.numel() else 0.0
    return Agreement(rhos, diff)


def combine(parts: Iterable[Agreement]) -> Agreement:
    """One summary over several groups: every sample's Spearman, the largest difference."""
    parts = list(parts)
    return Agreement(tuple(r for p in parts for r in p.spearman), max((p.max_abs_diff for p in parts), default=0.0))
