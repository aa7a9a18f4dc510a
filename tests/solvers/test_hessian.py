"""The token-weighted Hessian H' = (2 / N) sum_bt lambda_bt x_bt x_bt^T."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qigbench.solvers import HessianAccumulator, SolverError, weighted_hessian
from qigbench.tokens import TokenType, uniform_token_weights


def _types(batch: int, tokens: int, pad_from: list[int]) -> torch.Tensor:
    types = torch.full((batch, tokens), int(TokenType.TEXT))
    for b, start in enumerate(pad_from):
        types[b, start:] = int(TokenType.PAD)
    return types


@settings(deadline=None, max_examples=30)
@given(seed=st.integers(0, 2**16), tokens=st.integers(1, 6), hidden=st.integers(1, 6), which=st.integers(0, 5))
def test_weight_on_one_token_gives_its_outer_product(seed: int, tokens: int, hidden: int, which: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, tokens, hidden, generator=gen)
    t = which % tokens
    lam = torch.zeros(1, tokens)
    lam[0, t] = 1.0
    expected = 2 * torch.outer(x[0, t], x[0, t])
    assert torch.allclose(weighted_hessian(x, lam), expected, rtol=1e-5, atol=1e-6)


def test_one_token_per_sample_averages_over_samples() -> None:
    x = torch.randn(2, 3, 4)
    lam = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    expected = (torch.outer(x[0, 1], x[0, 1]) + torch.outer(x[1, 2], x[1, 2])) * (2 / 2)
    assert torch.allclose(weighted_hessian(x, lam), expected, rtol=1e-5, atol=1e-6)


def test_padding_contributes_nothing_even_if_garbage() -> None:
    x = torch.randn(2, 5, 3)
    types = _types(2, 5, [3, 5])
    poisoned = x.clone()
    poisoned[0, 3:] = float("nan")
    h = weighted_hessian(poisoned, token_types=types)
    # sample 0 is 3 tokens long: the same as a batch where each sample is given alone
    h0 = weighted_hessian(x[:1, :3])
    h1 = weighted_hessian(x[1:])
    assert torch.allclose(h, (h0 + h1) / 2, rtol=1e-5, atol=1e-6)


def test_uniform_weights_explicit_are_bit_identical_to_none() -> None:
    x = torch.randn(3, 7, 5)
    types = _types(3, 7, [7, 4, 2])
    types[1, 0] = int(TokenType.VISION)
    implicit = weighted_hessian(x, None, types)
    explicit = weighted_hessian(x, uniform_token_weights(types), types)
    assert torch.equal(implicit, explicit)


def test_unweighted_equal_length_is_plain_gptq_hessian() -> None:
    x = torch.randn(2, 6, 4)
    flat = x.reshape(-1, 4)
    assert torch.allclose(weighted_hessian(x), 2 * flat.T @ flat / flat.shape[0], rtol=1e-5, atol=1e-6)


def test_streaming_equals_one_batch() -> None:
    x = torch.randn(4, 5, 3)
    lam = torch.softmax(torch.randn(4, 5), dim=-1)
    acc = HessianAccumulator(3)
    acc.add(x[:1], lam[:1])
    acc.add(x[1:], lam[1:])
    assert torch.allclose(acc.hessian, weighted_hessian(x, lam), rtol=1e-5, atol=1e-6)
    assert acc.n_samples == 4 and acc.n_tokens == 20


def test_hessian_is_symmetric_psd() -> None:
    x = torch.randn(2, 9, 6)
    lam = torch.softmax(torch.randn(2, 9), dim=-1)
    h = weighted_hessian(x, lam)
    assert torch.equal(h, h.T)
    assert float(torch.linalg.eigvalsh(h.double()).min()) > -1e-6


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        (torch.full((2, 3), -0.1), "finite and >= 0"),
        (torch.ones(2, 3), "sum to"),
        (torch.ones(3, 3) / 3, "shape"),
    ],
)
def test_bad_token_weights_are_refused(weights: torch.Tensor, match: str) -> None:
    with pytest.raises(SolverError, match=match):
        weighted_hessian(torch.randn(2, 3, 4), weights)


def test_weight_on_padding_is_refused() -> None:
    types = _types(1, 3, [2])
    with pytest.raises(SolverError, match="padding"):
        weighted_hessian(torch.randn(1, 3, 2), torch.tensor([[0.5, 0.25, 0.25]]), types)


def test_wrong_feature_count_and_empty_accumulator() -> None:
    acc = HessianAccumulator(4)
    with pytest.raises(SolverError, match="no data"):
        _ = acc.hessian
    with pytest.raises(SolverError, match="features"):
        acc.add(torch.randn(1, 2, 3))
    with pytest.raises(SolverError, match=r"\[B, T, H\]"):
        acc.add(torch.randn(2, 4))
