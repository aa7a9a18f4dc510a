"""AWQ's weight-clip search, with token weights: shrink each group's range where that helps the output.

Rounding error of a group grows with its range; clipping the range (``compute_qparams``'s
``clip_ratio``) trades a few clamped outliers for a finer grid. For each output channel and
quantization group independently, we try ``ratio in {1, 1 - 1/n, ..., 1 - (k-1)/n}`` with
``k = max_shrink * n`` (AWQ: n = 20, max_shrink = 0.5 -> 1.0 ... 0.55) and keep the ratio that
minimises the group's contribution to the weighted output error

    err[o, g] = sum_bt (lambda_bt / B) * (x_bt,g . (Q(w)_o,g - w_o,g))^2

which is the quadratic form ``dq C_g dq^T`` with ``C_g`` the group's block of the weighted input
Gram matrix (computed once, so each ratio costs ``O(out * in * group)`` instead of a pass over
the tokens). When there are fewer tokens than a group is wide (per-channel on small calibration
sets) the token form is cheaper and is used instead. Ties keep the larger ratio (less clipping).

Each output row's ratios depend on that row alone, so searching a subset of rows (``rows``: the v
rows of a fused ``qkv_proj`` whose q and k rows must stay unclipped) gives exactly the ratios the
full search gives those rows; the other rows keep ratio 1 (no clipping) and cost nothing.
"""

from __future__ import annotations

import torch
from torch import Tensor

from qigbench.quant import Granularity, QuantSpec, check_tensor, fake_quantize, group_view
from qigbench.solvers.weights import SolverError, check_inputs, resolve_token_weights

#: rows of the weight processed at once on the token path (bounds memory to chunk * in * tokens)
ROW_CHUNK = 64
#: tokens per Gram-matrix update (bounds the float32 copy of the inputs)
GRAM_CHUNK = 4096


def search_clip(
    weight: Tensor,
    x: Tensor,
    token_weights: Tensor | None,
    spec: QuantSpec,
    n_grid: int = 20,
    max_shrink: float = 0.5,
    *,
    token_types: Tensor | None = None,
    rows: Tensor | None = None,
) -> Tensor:
    """Best clip ratio per (output channel, group), shaped ``[out, n_groups, 1]`` for ``compute_qparams``.

    ``weight [out, in]`` is the (already scaled) weight and ``x [B, T, in]`` its (already scaled) input.
    ``rows`` (indices into ``out``): search only these rows; every other row gets ratio 1.
    Apply the result with ``fake_quantize(weight, spec, clip_ratio=ratios)``.
    """
    if rows is not None:
        check_tensor(weight, "weight")
        if weight.dim() != 2:
            raise SolverError(f"clip search takes an [out, in] weight, got {tuple(weight.shape)}")
        index = rows.to(device=weight.device, dtype=torch.long)
        some = search_clip(weight.index_select(0, index), x, token_weights, spec, n_grid, max_shrink,
                           token_types=token_types)
        full = torch.ones((weight.shape[0], *some.shape[1:]), dtype=some.dtype, device=some.device)
        return full.index_copy_(0, index.to(some.device), some)
    check_tensor(weight, "weight")
    check_inputs(x)
    if weight.dim() != 2 or weight.shape[1] != x.shape[-1]:
        raise SolverError(
            f"weight {tuple(weight.shape)} does not match inputs with {x.shape[-1]} channels; pass the linear's "
            "[out, in] weight and its [B, T, in] input"
        )
    if spec.granularity not in (Granularity.PER_GROUP, Granularity.PER_CHANNEL):
        raise SolverError(f"clip search is per output channel (group); got {spec.granularity.value} weights")
    if n_grid <= 0 or not 0 <= max_shrink < 1:
        raise SolverError(f"need n_grid > 0 and 0 <= max_shrink < 1, got n_grid={n_grid}, max_shrink={max_shrink}")

    batch, tokens = int(x.shape[0]), int(x.shape[1])
    lam = resolve_token_weights(token_weights, token_types, (batch, tokens)).to(x.device).reshape(-1)
    keep = lam > 0
    flat = x.detach().reshape(-1, x.shape[-1])
    root = (lam / batch).sqrt()
    w = weight.detach().float()
    grouped_w = group_view(w, spec)  # [out, g, k]
    n_groups, size = int(grouped_w.shape[1]), int(grouped_w.shape[2])
    n_rows = int(keep.sum())
    gram: Tensor | None = None
    x_groups = flat.new_zeros((0, n_groups, size), dtype=torch.float32)
    if n_rows >= size:  # the Gram blocks, streamed over token chunks (no float copy of every row)
        gram = torch.zeros(n_groups, size, size, device=w.device)
        for i in range(0, flat.shape[0], GRAM_CHUNK):
            sel = keep[i : i + GRAM_CHUNK]
            part = (flat[i : i + GRAM_CHUNK][sel].float() * root[i : i + GRAM_CHUNK][sel].unsqueeze(1))
            part = part.reshape(-1, n_groups, size)
            gram += torch.einsum("ngk,ngl->gkl", part, part)
    else:
        x_groups = (flat[keep].float() * root[keep].unsqueeze(1)).reshape(-1, n_groups, size)  # [N, g, k]

    ratios = [1 - i / n_grid for i in range(max(1, int(max_shrink * n_grid)))]
    best_err = torch.full(grouped_w.shape[:2], float("inf"), device=w.device)
    best_ratio = torch.ones_like(best_err)
    for ratio in ratios:
        delta = group_view(fake_quantize(w, spec, clip_ratio=ratio), spec) - grouped_w
        err = _group_errors(delta, x_groups, gram)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_ratio = torch.where(better, torch.full_like(best_ratio, ratio), best_ratio)
    return best_ratio.unsqueeze(-1)


def _group_errors(delta: Tensor, x_groups: Tensor, gram: Tensor | None) -> Tensor:
    """``err[o, g] = sum_n (x_n,g . delta_o,g)^2`` (x already carries sqrt of the token weights)."""
    if gram is not None:
        return (torch.einsum("ogk,gkl->ogl", delta, gram) * delta).sum(dim=-1)
    parts = [
        torch.einsum("ngk,ogk->ogn", x_groups, delta[i : i + ROW_CHUNK]).pow(2).sum(dim=-1)
        for i in range(0, delta.shape[0], ROW_CHUNK)
    ]
    return torch.cat(parts, dim=0)
