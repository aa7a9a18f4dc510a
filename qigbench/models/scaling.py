"""Channel-wise equalisation in place: the one function AWQ, MBQ, QIG and SmoothQuant call.

For a scaling group, ``y = W (x)`` with ``x = prev(h)``. Multiplying W's input columns by ``s``
and dividing ``prev``'s output channels by ``s`` gives ``(W diag(s)) (diag(1/s) x) = W x``: the
fp function is unchanged while the weight distribution (and so the quantization error) moves.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from qigbench.models.errors import ScalingGroupError
from qigbench.models.family import ScalingGroup
from qigbench.models.registry import prev_out_features, resolve_group
from qigbench.quant import QuantLinear


@torch.no_grad()
def apply_scales_(block: nn.Module, family_group: ScalingGroup, scales: torch.Tensor) -> None:
    """Scale ``family_group`` of ``block`` in place: previous op output * 1/s, linears' input columns * s.

    The previous op may be a linear (its output rows and bias are divided), or a norm with a
    per-channel affine weight (RMSNorm: weight; LayerNorm: weight and bias). Norms whose
    output is ``x * (1 + weight)`` (Gemma-style) cannot absorb a scale this way and are not
    supported. The arithmetic is done in float32 (or float64 weights) and cast back.
    """
    resolved = resolve_group(block, family_group)
    s = scales.detach().reshape(-1)
    width = prev_out_features(resolved.prev_op)
    if width is None:
        raise ScalingGroupError(
            f"group {family_group.name!r}: previous op {type(resolved.prev_op).__name__} has no per-channel weight "
            "to absorb 1/s (supported: nn.Linear, RMSNorm/LayerNorm with a 1-d weight)"
        )
    if s.numel() != width or any(lin.in_features != width for lin in resolved.linears):
        raise ScalingGroupError(
            f"group {family_group.name!r}: scales have {s.numel()} entries, previous op emits {width} channels, "
            f"linears take {[lin.in_features for lin in resolved.linears]}; they must all agree "
            "(the 'o' group does not exist under grouped-query attention: skip it with applicable_groups)"
        )
    if not bool(torch.isfinite(s).all()) or not bool((s > 0).all()):
        raise ScalingGroupError(f"group {family_group.name!r}: scales must be finite and > 0")

    check_absorbs_inverse_scale(resolved.prev_op, family_group.name)
    _divide_output_(resolved.prev_op, s)
    for lin in resolved.linears:
        w = lin.weight
        work = _work_dtype(w.dtype)
        w.copy_((w.to(work) * s.to(device=w.device, dtype=work)[None, :]).to(w.dtype))


def _divide_output_(prev: nn.Module, s: torch.Tensor) -> None:
    """Divide the previous op's output channels by ``s``: its per-channel weight rows and bias."""
    weight = prev.weight
    assert isinstance(weight, torch.Tensor)  # prev_out_features checked it
    _scale_rows_(weight, s, divide=True)
    bias = getattr(prev, "bias", None)
    if isinstance(bias, torch.Tensor):
        _scale_rows_(bias, s, divide=True)


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
