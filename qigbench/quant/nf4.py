"""NF4 weights (QLoRA's 4-bit NormalFloat, as bitsandbytes stores them): blocks of 64 consecutive
weights share one absmax; each weight is divided by it and rounded to the nearest of 16 fixed
levels (the quantiles of a standard normal, rescaled to [-1, 1], with an exact 0).

This is what Q-VLM's released weights are (``BitsAndBytesConfig(load_in_4bit, nf4)``, block 64).
bitsandbytes' double quantization (the absmaxes themselves 8-bit quantized in blocks of 256) is
not reproduced: the absmax is kept in float, a difference of well under one NF4 step.
"""

from __future__ import annotations

import torch

from qigbench.errors import FormatError
from qigbench.quant.quantizer import check_tensor

#: The 16 NF4 levels (bitsandbytes ``create_normal_map``), ascending.
NF4_LEVELS = (
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
)  # fmt: skip
NF4_BLOCK = 64


def _blocks(w: torch.Tensor, block: int) -> torch.Tensor:
    if w.numel() % block != 0:
        raise FormatError(
            f"NF4 needs the weight's size ({w.numel()}) to be a multiple of the block size {block}; "
            "use weights=format (the run's integer format) for this model"
        )
    return w.reshape(-1, block).float()


def nf4_quantize(w: torch.Tensor, block: int = NF4_BLOCK, clip_ratio: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes in 0..15 (``[n_blocks, block]``) and the per-block absmax (``[n_blocks, 1]``)."""
    check_tensor(w, "weight")
    b = _blocks(w, block)
    absmax = (b.abs().amax(dim=-1, keepdim=True) * clip_ratio).clamp_min(torch.finfo(torch.float32).tiny)
    levels = torch.tensor(NF4_LEVELS, device=w.device)
    midpoints = (levels[1:] + levels[:-1]) / 2  # nearest level = number of midpoints below
    normed = (b / absmax).clamp(-1.0, 1.0)
    codes = torch.zeros(normed.shape, dtype=torch.long, device=w.device)
    for mid in midpoints:  # 15 vectorised compares: cheaper than a per-element binary search
        codes += normed > mid
    return codes, absmax


def nf4_dequantize(codes: torch.Tensor, absmax: torch.Tensor, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
    levels = torch.tensor(NF4_LEVELS, device=codes.device)
    return (levels[codes] * absmax).reshape(shape).to(dtype)


def nf4_fake_quantize(w: torch.Tensor, block: int = NF4_BLOCK, clip_ratio: float = 1.0) -> torch.Tensor:
    """``dequantize(quantize(w))`` in NF4 with blocks of ``block`` consecutive (row-major) weights."""
    codes, absmax = nf4_quantize(w, block, clip_ratio)
    return nf4_dequantize(codes, absmax, w.shape, w.dtype)
