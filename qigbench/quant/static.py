"""Per-input-channel activation quantization with a range fixed at calibration (Q-VLM).

The harness's own activation quantizer is dynamic and per token. Q-VLM's released code instead
keeps, for every linear, one asymmetric range ``[lo_c, hi_c]`` per *input channel* ``c``: the
running min/max of the calibration inputs over tokens, started at 0 (so 0 is always in range),
optionally shrunk by a clip ratio. It is fake-quant only: an integer GEMM cannot use a scale that
varies along the reduction dimension.

The grid is the harness's asymmetric one (:func:`qparams_from_range`), which equals the
released code's ``k = (2^a - 1)/(M - m)``, ``z = round(k m) + n`` form value for value. A dead
channel (``lo == hi == 0``) would divide by zero there (issue #9 of the release); here its scale
is floored, the result stays finite, and :func:`dead_channels` lets callers log it.
"""

from __future__ import annotations

import torch

from qigbench.quant.formats import Granularity, QuantSpec
from qigbench.quant.quantizer import fake_quantize_with, qparams_from_range


def channel_spec(bits: int) -> QuantSpec:
    """The asymmetric grid one input channel is quantized on."""
    return QuantSpec(bits, symmetric=False, granularity=Granularity.PER_CHANNEL)


def _flat(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``x[..., C]`` as ``[tokens, C]``, keeping only the tokens where ``mask`` (``x.shape[:-1]``) holds."""
    flat = x.reshape(-1, x.shape[-1])
    if mask is not None:
        flat = flat[mask.reshape(-1).to(flat.device)]
    return flat.float()


def channel_range(
    x: torch.Tensor, mask: torch.Tensor | None = None, include_zero: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel min and max of ``x[..., C]`` over every token (masked-out tokens excluded).

    ``include_zero`` starts the range at 0 as the released code does (its range buffers are
    zero-initialised), so ``lo <= 0 <= hi``."""
    flat = _flat(x, mask)
    width = x.shape[-1]
    if flat.shape[0] == 0:
        zeros = torch.zeros(width, device=x.device)
        return zeros, zeros.clone()
    lo, hi = flat.amin(dim=0), flat.amax(dim=0)
    if include_zero:
        lo, hi = lo.clamp_max(0.0), hi.clamp_min(0.0)
    return lo, hi


def update_range(
    lo: torch.Tensor, hi: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The running range widened by ``x``'s tokens (``min(lo, min_t x)``, ``max(hi, max_t x)``)."""
    new_lo, new_hi = channel_range(x, mask, include_zero=False)
    if _flat(x, mask).shape[0] == 0:
        return lo, hi
    return torch.minimum(lo, new_lo.to(lo.device)), torch.maximum(hi, new_hi.to(hi.device))


def dead_channels(lo: torch.Tensor, hi: torch.Tensor) -> int:
    """Channels whose range is empty (every calibration value was the same, usually 0)."""
    return int((hi - lo <= 0).sum())


def static_qparams(
    lo: torch.Tensor, hi: torch.Tensor, bits: int, clip_ratio: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point per channel for the range ``clip_ratio * [lo, hi]``."""
    scale, zero = qparams_from_range(lo * clip_ratio, hi * clip_ratio, channel_spec(bits))
    assert zero is not None
    return scale, zero


def fake_quantize_static(
    x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, bits: int, clip_ratio: float = 1.0
) -> torch.Tensor:
    """Quantize-dequantize ``x[..., C]`` on the per-channel grid of ``clip_ratio * [lo, hi]``."""
    scale, zero = static_qparams(lo.to(x.device), hi.to(x.device), bits, clip_ratio)
    return fake_quantize_with(x, scale, zero, channel_spec(bits))


def fake_quantize_channel_dynamic(x: torch.Tensor, bits: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The per-channel range taken from ``x`` itself (this call's tokens): the released code's
    inference rule for o_proj and down_proj (and for every layer when the hidden size is not 4096)."""
    lo, hi = channel_range(x, mask)
    return fake_quantize_static(x, lo, hi, bits)
