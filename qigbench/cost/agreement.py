"""How close two runs' token weights are: Spearman rank correlation and max |delta lambda|.

Both are computed per (block, group, sample) over the sample's non-padding tokens and summarised
as the mean / minimum Spearman and the maximum |delta lambda| over everything. The inputs are what
a calibration report holds (``{"weights": report.token_weights, "token_types": report.token_types}``,
as :mod:`qigbench.cost.isolated` saves them).
"""

from __future__ import annotations

from typing import Any

import torch


def _ranks(v: torch.Tensor) -> torch.Tensor:
    """Average ranks (ties share the mean rank), float64."""
    order = torch.argsort(v, stable=True)
    ranks = torch.empty_like(v, dtype=torch.float64)
    ranks[order] = torch.arange(v.numel(), dtype=torch.float64)
    sorted_v = v[order]
    start = 0
    for i in range(1, v.numel() + 1):
        if i == v.numel() or sorted_v[i] != sorted_v[start]:
            if i - start > 1:
                ranks[order[start:i]] = (start + i - 1) / 2
            start = i
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = _ranks(a.double()), _ranks(b.double())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / den if den > 0 else 1.0


def agreement(ref: dict[str, Any], other: dict[str, Any]) -> dict[str, float]:
    """``ref`` / ``other``: ``{"weights": {block: {group: lambda[N, T]}}, "token_types": [N, T]}``."""
    valid = ref["token_types"] != 0
    rhos: list[float] = []
    worst = 0.0
    for block, groups in ref["weights"].items():
        for group, lam in groups.items():
            lam2 = other["weights"][block][group]
            worst = max(worst, float((lam - lam2).abs().max()))
            for n in range(lam.shape[0]):
                keep = valid[n]
                rhos.append(spearman(lam[n][keep], lam2[n][keep]))
    return {"spearman_mean": sum(rhos) / len(rhos), "spearman_min": min(rhos), "max_abs_dlambda": worst,
            "max_lambda": max(float(g.max()) for gs in ref["weights"].values() for g in gs.values())}
