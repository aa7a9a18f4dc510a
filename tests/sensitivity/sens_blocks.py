"""Tiny compared modules and attribution targets for the sensitivity tests."""

from __future__ import annotations

import copy

import torch
from torch import nn

from qigbench.quant import QuantLinear, fake_quantize, parse_format, quantize_linears_
from qigbench.sensitivity import AttributionTarget
from qigbench.tokens import TokenType

WEIGHT_ONLY = "W3A16g8"
WEIGHT_ACT = "W4A8"


def mlp(h: int, seed: int, dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(h, 2 * h), nn.SiLU(), nn.Linear(2 * h, h)).to(dtype)


def quantized_copy(module: nn.Module, fmt: str) -> nn.Module:
    """RTN copy; activation quantizers get a straight-through gradient (as the engine builds f_q)."""
    q = copy.deepcopy(module)
    quantize_linears_(q, fmt)
    for m in q.modules():
        if isinstance(m, QuantLinear):
            m.straight_through = True
    return q


def token_types(b: int, t: int, seed: int, pad_left: bool = False, n_pad: list[int] | None = None) -> torch.Tensor:
    """Random vision/text/special layout per row, with the given amount of padding per row."""
    g = torch.Generator().manual_seed(seed)
    tt = torch.randint(1, 4, (b, t), generator=g)
    for i, p in enumerate(n_pad or [0] * b):
        if p:
            if pad_left:
                tt[i, :p] = TokenType.PAD
            else:
                tt[i, t - p :] = TokenType.PAD
    return tt


def make_target(
    b: int = 2,
    t: int = 7,
    h: int = 16,
    seed: int = 0,
    fmt: str = WEIGHT_ONLY,
    n_pad: list[int] | None = None,
    pad_left: bool = False,
    dtype: torch.dtype = torch.float32,
) -> AttributionTarget:
    f = mlp(h, seed, dtype)
    fq = quantized_copy(f, fmt)
    torch.manual_seed(seed + 1)
    x = torch.randn(b, t, h, dtype=dtype) * 2
    spec = parse_format(fmt).activation
    x_q = fake_quantize(x, spec) if spec is not None else None
    return AttributionTarget(f_fp=f, f_q=fq, x=x, x_q=x_q, token_types=token_types(b, t, seed, pad_left, n_pad))
