"""Uniform integer quantization as small pure tensor functions.

Two layers:

* element-wise primitives that take explicit ``(scale, zero)`` — what GPTQ needs when it quantizes
  one column at a time with its group's parameters;
* tensor-level functions that split a tensor into the groups a :class:`QuantSpec` asks for,
  compute the parameters from each group's range and apply the primitives.

Maths (paper, Appendix B):

* asymmetric: ``s = (max - min) / (2^b - 1)``, ``z = round(-min / s)``,
  ``q = clamp(round(x / s) + z, 0, 2^b - 1)``, ``x_hat = s (q - z)``;
* symmetric: ``s = max|x| / (2^(b-1) - 1)``, ``q = clamp(round(x / s), -2^(b-1), 2^(b-1) - 1)``,
  ``x_hat = s q``.

The zero point is kept as an unclamped integer so that *every* value of a group, its min and max
included, lands within ``s / 2`` of the grid. A group whose range is (nearly) zero would divide
by zero; its scale is floored at ``max|x| * 2^-12`` (and at the dtype's smallest normal), which
still reconstructs a constant group exactly.

All arithmetic runs in float32 (half inputs are upcast); outputs keep the input dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from qigbench.errors import FormatError, QuantInputError
from qigbench.quant.formats import Granularity, QuantSpec

#: Relative floor of a scale: protects near-constant groups from dividing by ~0.
SCALE_FLOOR_REL = 2.0**-12


@dataclass(frozen=True)
class QuantizedTensor:
    """Integer codes plus what is needed to map them back to floats.

    ``codes`` has the grouped shape ``[*lead, n_groups, group_len]``; ``scale`` and ``zero`` have
    ``[*lead, n_groups, 1]``. ``shape`` is the original tensor shape.
    """

    codes: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor | None
    spec: QuantSpec
    shape: torch.Size
    dtype: torch.dtype


def check_tensor(x: torch.Tensor, name: str = "tensor") -> None:
    """Refuse what would silently produce a wrong tensor."""
    if not isinstance(x, torch.Tensor):
        raise QuantInputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise QuantInputError(
            f"{name} has integer/bool dtype {x.dtype}; quantize floating-point tensors "
            "(call .float() first, or dequantize already-quantized codes)"
        )
    if x.numel() == 0:
        raise QuantInputError(f"{name} is empty (shape {tuple(x.shape)}); nothing to quantize")
    if not bool(torch.isfinite(x).all()):
        n_nan = int(torch.isnan(x).sum())
        n_inf = int((~torch.isfinite(x)).sum()) - n_nan
        fp16 = (
            " In float16, values beyond +-65504 overflow to Inf: try dtype bfloat16 or float32."
            if x.dtype == torch.float16
            else ""
        )
        raise QuantInputError(
            f"{name} (shape {tuple(x.shape)}, {str(x.dtype).removeprefix('torch.')}) contains {n_nan + n_inf} "
            f"NaN/Inf value(s) ({n_nan} NaN, {n_inf} Inf); quantization scales would be undefined. The tensor "
            f"comes from the model's weights or the calibration inputs (a damaged checkpoint, or a previous step "
            f"that produced it).{fp16}"
        )


def group_view(x: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """Reshape ``x`` to ``[*lead, n_groups, group_len]``: statistics are taken over the last dim."""
    if spec.granularity is Granularity.PER_TENSOR:
        return x.reshape(1, 1, -1)
    if x.dim() == 0:
        raise QuantInputError(f"{spec.granularity.value} quantization needs at least 1 dimension, got a scalar")
    last = x.shape[-1]
    if spec.granularity is Granularity.PER_GROUP:
        size = spec.group_size
        assert size is not None  # guaranteed by QuantSpec
        if last % size != 0:
            divisors = [d for d in (256, 128, 64, 32, 16, 8) if last % d == 0]
            hint = f"e.g. g{divisors[0]}" if divisors else "per-channel ('gc')"
            raise FormatError(
                f"group size {size} does not divide the input dimension {last}; choose a group size "
                f"that divides {last} ({hint}) or per-channel quantization"
            )
        return x.reshape(*x.shape[:-1], last // size, size)
    # per-channel (weights: one scale per row) and per-token (activations: one per vector)
    return x.reshape(*x.shape[:-1], 1, last)


def _floor_scale(scale: torch.Tensor, absmax: torch.Tensor) -> torch.Tensor:
    tiny = torch.finfo(scale.dtype).tiny
    floor = (absmax * SCALE_FLOOR_REL).clamp_min(tiny)
    return torch.maximum(scale, floor)


def qparams_from_range(
    lo: torch.Tensor, hi: torch.Tensor, spec: QuantSpec
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scale and (asymmetric only) integer-valued zero point for groups spanning ``[lo, hi]``."""
    lo, hi = lo.float(), hi.float()
    absmax = torch.maximum(lo.abs(), hi.abs())
    if spec.symmetric:
        return _floor_scale(absmax / spec.qmax, absmax), None
    scale = _floor_scale((hi - lo) / spec.qmax, absmax)
    zero = torch.round(-lo / scale)
    return scale, zero


def compute_qparams(
    x: torch.Tensor, spec: QuantSpec, clip_ratio: float | torch.Tensor = 1.0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-group parameters of ``x``; ``clip_ratio`` < 1 shrinks the range (AWQ's clip search)."""
    g = group_view(x, spec).float()
    lo = g.amin(dim=-1, keepdim=True) * clip_ratio
    hi = g.amax(dim=-1, keepdim=True) * clip_ratio
    return qparams_from_range(lo, hi, spec)


def quantize_codes(
    x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None, spec: QuantSpec
) -> torch.Tensor:
    """Element-wise ``clamp(round(x / s) + z)`` as int32 codes (broadcasting ``scale``/``zero``)."""
    q = torch.round(x.float() / scale)
    if zero is not None:
        q = q + zero
    return q.clamp(spec.qmin, spec.qmax).to(torch.int32)


def dequantize_codes(codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None) -> torch.Tensor:
    q = codes.float()
    if zero is not None:
        q = q - zero
    return q * scale


def fake_quantize_with(
    x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None, spec: QuantSpec
) -> torch.Tensor:
    """``dequantize(quantize(x))`` with given parameters, without materialising int codes."""
    q = torch.round(x.float() / scale)
    if zero is not None:
        q = (q + zero).clamp(spec.qmin, spec.qmax) - zero
    else:
        q = q.clamp(spec.qmin, spec.qmax)
    return (q * scale).to(x.dtype)


def quantize(x: torch.Tensor, spec: QuantSpec, clip_ratio: float | torch.Tensor = 1.0) -> QuantizedTensor:
    """Quantize ``x`` group-wise to int codes; see :func:`dequantize`."""
    check_tensor(x)
    scale, zero = compute_qparams(x, spec, clip_ratio)
    codes = quantize_codes(group_view(x, spec), scale, zero, spec)
    return QuantizedTensor(codes=codes, scale=scale, zero=zero, spec=spec, shape=x.shape, dtype=x.dtype)


def dequantize(q: QuantizedTensor) -> torch.Tensor:
    return dequantize_codes(q.codes, q.scale, q.zero).reshape(q.shape).to(q.dtype)


def fake_quantize(x: torch.Tensor, spec: QuantSpec, clip_ratio: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Quantize-dequantize ``x`` in one step (same values as ``dequantize(quantize(x))``)."""
    check_tensor(x)
    scale, zero = compute_qparams(x, spec, clip_ratio)
    return fake_quantize_with(group_view(x, spec), scale, zero, spec).reshape(x.shape)


class _RoundSTE(torch.autograd.Function):
    """Fake quantization whose backward is the identity (straight-through estimator).

    Used where a gradient must flow *through* an activation quantizer (QIG's quantized branch);
    the forward value is exactly :func:`fake_quantize`.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, spec: QuantSpec) -> torch.Tensor:  # type: ignore[override]
        return fake_quantize(x.detach(), spec)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad, None


def fake_quantize_ste(x: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    return _RoundSTE.apply(x, spec)  # type: ignore[no-any-return]
