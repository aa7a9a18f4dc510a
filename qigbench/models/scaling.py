"""Channel-wise equalisation in place: the arithmetic AWQ, MBQ, QIG and SmoothQuant share.

For a scaling group, ``y = W (x)`` with ``x = prev(h)``. Multiplying W's input columns by ``s``
and dividing ``prev``'s output channels by ``s`` gives ``(W diag(s)) (diag(1/s) x) = W x``: the
fp function is unchanged while the weight distribution (and so the quantization error) moves.

The previous op may also be a *slice* of a fused linear's output rows (``rows``: ``[start, stop)``
runs, e.g. the v rows of Phi-3's ``qkv_proj``): then only those rows (and their bias entries) are
divided, and the rest of the fused output is untouched.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from qigbench.models.errors import ScalingGroupError
from qigbench.quant import QuantLinear

#: output rows of a fused linear as ``[start, stop)`` runs, in the order of the channels they feed
Rows = tuple[tuple[int, int], ...]


@torch.no_grad()
def scale_(
    prev: nn.Module, linears: Sequence[nn.Module], scales: torch.Tensor, *, group: str, rows: Rows | None = None
) -> None:
    """Scale one group in place: ``prev``'s output * 1/s (only ``rows`` of it, when given), the
    ``linears``' input columns * s.

    The previous op may be a linear (its output rows and bias are divided), or a norm with a
    per-channel affine weight (RMSNorm: weight; LayerNorm: weight and bias). Norms whose
    output is ``x * (1 + weight)`` (Gemma-style) cannot absorb a scale this way and are not
    supported. The arithmetic is done in float32 (or float64 weights) and cast back.
    :func:`qigbench.models.groups.apply_scales_` finds ``prev`` and ``linears`` in a block.
    """
    s = scales.detach().reshape(-1)
    width = prev_out_features(prev) if rows is None else rows_width(rows)
    if width is None:
        raise ScalingGroupError(
            f"group {group!r}: previous op {type(prev).__name__} has no per-channel weight "
            "to absorb 1/s (supported: nn.Linear, RMSNorm/LayerNorm with a 1-d weight)"
        )
    in_features = [int(lin.in_features) for lin in linears]  # type: ignore[arg-type]
    if s.numel() != width or any(n != width for n in in_features):
        raise ScalingGroupError(
            f"group {group!r}: scales have {s.numel()} entries, previous op emits {width} channels, "
            f"linears take {in_features}; they must all agree "
            "(the 'o' group does not exist under grouped-query attention: resolve_groups marks it not scalable)"
        )
    if not bool(torch.isfinite(s).all()) or not bool((s > 0).all()):
        raise ScalingGroupError(f"group {group!r}: scales must be finite and > 0")

    check_absorbs_inverse_scale(prev, group)
    _divide_output_(prev, s, rows)
    for lin in linears:
        w = lin.weight
        assert isinstance(w, torch.Tensor)
        work = _work_dtype(w.dtype)
        w.copy_((w.to(work) * s.to(device=w.device, dtype=work)[None, :]).to(w.dtype))


def prev_out_features(prev: nn.Module) -> int | None:
    """Channels the previous op emits (the size of ``s`` it can absorb), or None if unknown."""
    if isinstance(prev, nn.Linear):
        return prev.out_features
    weight = getattr(prev, "weight", None)
    out_features = getattr(prev, "out_features", None)
    if isinstance(out_features, int) and isinstance(weight, nn.Parameter) and weight.dim() == 2:
        return out_features  # a QuantLinear: its rows still absorb 1/s exactly (each row has its own grid)
    if isinstance(weight, nn.Parameter) and weight.dim() == 1:
        return int(weight.shape[0])
    return None


def rows_width(rows: Rows) -> int:
    return sum(stop - start for start, stop in rows)


def rows_index(rows: Rows, device: torch.device | str | None = None) -> torch.Tensor:
    """The row indices of ``rows``, in order (a LongTensor)."""
    return torch.cat([torch.arange(a, b, device=device) for a, b in rows]) if rows else torch.zeros(0, dtype=torch.long)


@torch.no_grad()
def divided_rows(t: torch.Tensor, s: torch.Tensor, rows: Rows | None = None) -> torch.Tensor:
    """A copy of ``t`` with dim 0 divided by ``s`` (only at ``rows`` when given): how a previous op's
    per-row quantities (weight rows, bias, a quantized weight's per-row scales) absorb ``1/s``."""
    out = t.clone()
    if rows is None:
        _scale_rows_(out, s, divide=True)
    else:
        index = rows_index(rows, t.device)
        part = out.index_select(0, index)
        _scale_rows_(part, s, divide=True)
        out.index_copy_(0, index, part)
    return out


def _divide_output_(prev: nn.Module, s: torch.Tensor, rows: Rows | None = None) -> None:
    """Divide the previous op's output channels by ``s``: its per-channel weight rows and bias
    (only ``rows`` of them for a slice of a fused linear)."""
    for name in ("weight", "bias"):
        t = getattr(prev, name, None)
        if isinstance(t, torch.Tensor):
            t.copy_(divided_rows(t, s, rows))


_ABSORBS: dict[type, bool] = {}


@torch.no_grad()
def absorbs_inverse_scale(prev: nn.Module) -> bool:
    """Whether dividing ``prev``'s weight (and bias) rows by ``s`` divides its output by ``s``.

    True for linears and for norms of the form ``x_hat * w (+ b)`` (RMSNorm, LayerNorm); False for
    e.g. Gemma's ``x_hat * (1 + w)``, where the same edit changes the block's function. Checked
    once per module class on a float copy with random inputs and scales.
    """
    if isinstance(prev, (nn.Linear, QuantLinear)):
        return True
    kind = type(prev)
    if kind not in _ABSORBS:
        width = prev_out_features(prev)
        if width is None:
            return False
        gen = torch.Generator().manual_seed(0)
        probe = copy.deepcopy(prev).float().cpu()
        for p in probe.parameters():
            p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
        x = torch.randn(1, 3, width, generator=gen)
        s = torch.rand(width, generator=gen) * 3 + 0.25
        before = probe(x)
        _divide_output_(probe, s)
        after = probe(x)
        _ABSORBS[kind] = bool(torch.allclose(after, before / s, rtol=1e-4, atol=1e-5))
    return _ABSORBS[kind]


def check_absorbs_inverse_scale(prev: nn.Module, group: str) -> None:
    """Reject a previous op that cannot absorb ``1/s`` (see :func:`absorbs_inverse_scale`)."""
    if not absorbs_inverse_scale(prev):
        raise ScalingGroupError(
            f"group {group!r}: previous op {type(prev).__name__} does not divide its output by s when its weight "
            "is divided by s (e.g. a Gemma-style norm computing x * (1 + w)); scaling it would change the model. "
            "Fix the family description: give the group a previous op that absorbs 1/s, or drop the group "
            "(its linears are still quantized, unscaled)"
        )


def _scale_rows_(t: torch.Tensor, s: torch.Tensor, *, divide: bool) -> None:
    """Multiply (or divide) dim 0 of ``t`` by ``s``: a linear's output rows, a norm's channels."""
    work = _work_dtype(t.dtype)
    factor = s.to(device=t.device, dtype=work)
    factor = factor.reshape(-1, *([1] * (t.dim() - 1)))
    t.copy_((t.to(work) / factor if divide else t.to(work) * factor).to(t.dtype))


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32
