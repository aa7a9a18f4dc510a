"""AWQ's clip search and SmoothQuant's scales."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from qigbench.quant import Granularity, QuantSpec, fake_quantize, parse_format
from qigbench.solvers import (
    SolverError,
    activation_absmax,
    activation_range,
    search_clip,
    search_smooth_alpha,
    smooth_scales,
)
from qigbench.solvers.clip_search import _group_errors
from qigbench.tokens import TokenType, uniform_token_weights

G8 = QuantSpec(3, False, Granularity.PER_GROUP, 8)


def _layer(seed: int, tokens: int = 12) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(6, 32, generator=gen)
    weight[:, ::7] *= 6.0  # outliers that widen the range of some groups
    x = torch.randn(2, tokens, 32, generator=gen)
    types = torch.full((2, tokens), int(TokenType.TEXT))
    types[1, -3:] = int(TokenType.PAD)
    return weight, x, types


def _weighted_error(weight: torch.Tensor, quantized: torch.Tensor, x: torch.Tensor, lam: torch.Tensor) -> float:
    diff = x @ (weight - quantized).T
    return float((lam.unsqueeze(-1) * diff.pow(2)).sum())


@pytest.mark.parametrize("spec", [G8, QuantSpec(4, True, Granularity.PER_CHANNEL)], ids=["g8-asym", "channel-sym"])
def test_clip_search_never_worse_than_no_clip(spec: QuantSpec) -> None:
    weight, x, types = _layer(0)
    ratios = search_clip(weight, x, None, spec, token_types=types)
    assert ratios.shape == (6, 32 // (spec.group_size or 32), 1)
    assert bool(((ratios >= 0.55 - 1e-6) & (ratios <= 1.0)).all())
    lam = uniform_token_weights(types)
    clipped = _weighted_error(weight, fake_quantize(weight, spec, clip_ratio=ratios), x, lam)
    plain = _weighted_error(weight, fake_quantize(weight, spec), x, lam)
    assert clipped <= plain * (1 + 1e-6)
    assert bool((ratios < 1).any())  # the outlier groups do get clipped


def test_clip_search_uniform_equals_none_and_paths_agree() -> None:
    weight, x, types = _layer(1)
    a = search_clip(weight, x, None, G8, token_types=types)
    b = search_clip(weight, x, uniform_token_weights(types), G8, token_types=types)
    assert torch.equal(a, b)
    # the Gram (quadratic-form) path and the token path compute the same errors
    gen = torch.Generator().manual_seed(2)
    delta = torch.randn(6, 4, 8, generator=gen)
    rows = torch.randn(20, 4, 8, generator=gen)
    gram = torch.einsum("ngk,ngl->gkl", rows, rows)
    assert torch.allclose(_group_errors(delta, rows, gram), _group_errors(delta, rows, None), rtol=1e-5, atol=1e-6)


def test_clip_search_bad_input() -> None:
    weight, x, _ = _layer(3)
    with pytest.raises(SolverError, match="does not match"):
        search_clip(weight[:, :16], x, None, G8)
    with pytest.raises(SolverError, match="max_shrink"):
        search_clip(weight, x, None, G8, max_shrink=1.0)


@settings(deadline=None, max_examples=40)
@given(
    seed=st.integers(0, 2**16),
    alpha=st.floats(0.0, 1.0),
    n_linears=st.integers(1, 3),
)
def test_smooth_scales_formula_and_folding(seed: int, alpha: float, n_linears: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(10, 8, generator=gen) * (torch.rand(8, generator=gen) * 10 + 0.1)
    weights = [torch.randn(4, 8, generator=gen) for _ in range(n_linears)]
    act = x.abs().amax(dim=0)
    s = smooth_scales(act, weights, alpha)
    w_max = torch.stack([w.abs().amax(0) for w in weights]).amax(0)
    assert torch.allclose(s, act.pow(alpha) / w_max.pow(1 - alpha), rtol=1e-5, atol=1e-6)
    for w in weights:  # folding X / s into the previous op and W * s into the linear is exact maths
        assert torch.allclose((x / s) @ (w * s).T, x @ w.T, rtol=1e-4, atol=1e-4)


def test_alpha_half_balances_activation_and_weight_ranges() -> None:
    gen = torch.Generator().manual_seed(0)
    act = torch.rand(8, generator=gen) * 50 + 0.5
    weight = torch.randn(5, 8, generator=gen)
    s = smooth_scales(act, [weight], 0.5)
    assert torch.allclose(act / s, (weight * s).abs().amax(0), rtol=1e-5, atol=1e-6)


def test_smooth_scales_guards() -> None:
    weight = torch.randn(3, 4)
    weight[:, 1] = 0.0
    act = torch.tensor([1.0, 2.0, 0.0, 4.0])
    s = smooth_scales(act, [weight])
    assert s[1] == 1.0  # nothing reads channel 1
    assert bool(torch.isfinite(s).all()) and bool((s > 0).all())
    with pytest.raises(SolverError, match="alpha"):
        smooth_scales(act, [weight], 1.5)
    with pytest.raises(SolverError, match="does not read"):
        smooth_scales(act, [torch.randn(3, 5)])


def test_activation_statistics_skip_padding() -> None:
    x = torch.tensor([[[1.0, -3.0], [2.0, 0.5], [100.0, -100.0]]])
    types = torch.tensor([[1, 2, 0]])
    assert activation_absmax(x, types).tolist() == [2.0, 3.0]
    assert activation_range(x, types).tolist() == [1.0, 3.5]


def test_smooth_alpha_search_uniform_equals_none_and_restores() -> None:
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 6, 16, generator=gen)
    x[..., 2] *= 40.0
    types = torch.full((2, 6), int(TokenType.TEXT))
    types[0, -1] = int(TokenType.PAD)
    linear = nn.Linear(16, 8)
    before = linear.weight.data.clone()
    alphas = [0.25, 0.5, 0.75]
    fmt = parse_format("W4A8")
    a = search_smooth_alpha(x, [linear], linear, fmt, None, types, alphas=alphas)
    b = search_smooth_alpha(x, [linear], linear, fmt, uniform_token_weights(types), types, alphas=alphas)
    assert a.alpha == b.alpha and a.losses == b.losses and torch.equal(a.scales, b.scales)
    assert a.alpha in alphas and a.best_loss == min(a.losses)
    assert torch.equal(linear.weight.data, before)
