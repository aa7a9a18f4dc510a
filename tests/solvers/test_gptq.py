"""GPTQ: equals RTN without correlations, beats it on average with them, weighted == unweighted at uniform."""

from __future__ import annotations

import logging

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qigbench.errors import FormatError
from qigbench.quant import Granularity, QuantSpec, dequantize, fake_quantize
from qigbench.solvers import GPTQConfig, SolverError, gptq_quantize, weighted_hessian
from qigbench.tokens import TokenType, uniform_token_weights


@st.composite
def specs(draw: st.DrawFn) -> QuantSpec:
    bits = draw(st.integers(2, 8))
    symmetric = draw(st.booleans())
    if draw(st.booleans()):
        return QuantSpec(bits, symmetric, Granularity.PER_GROUP, draw(st.sampled_from([4, 8, 16])))
    return QuantSpec(bits, symmetric, Granularity.PER_CHANNEL)


@settings(deadline=None, max_examples=40)
@given(
    spec=specs(),
    seed=st.integers(0, 2**16),
    out=st.integers(1, 9),
    n_groups=st.integers(1, 3),
    block=st.sampled_from([1, 5, 16, 128]),
    act_order=st.booleans(),
    static=st.booleans(),
    diag_h=st.booleans(),
)
def test_diagonal_hessian_is_rtn_exactly(
    spec: QuantSpec, seed: int, out: int, n_groups: int, block: int, act_order: bool, static: bool, diag_h: bool
) -> None:
    """H = I (or any positive diagonal H: no correlations, nothing to compensate) gives RTN bit for bit.

    A random positive diagonal with act-order also permutes the columns, so this checks that the
    group parameters follow the original column groups.
    """
    gen = torch.Generator().manual_seed(seed)
    n = 16 * n_groups
    weight = torch.randn(out, n, generator=gen) * torch.rand(1, n, generator=gen) * 3
    hessian = torch.diag(torch.rand(n, generator=gen) + 0.1) if diag_h else torch.eye(n)
    cfg = GPTQConfig(block_size=block, act_order=act_order, static_groups=static)
    result = gptq_quantize(weight, hessian, spec, cfg)
    assert torch.equal(result.weight, fake_quantize(weight, spec))
    assert torch.equal(dequantize(result.to_quantized_tensor()), result.weight)


def test_identity_hessian_half_precision_weight_is_rtn() -> None:
    weight = torch.randn(8, 32).to(torch.bfloat16)
    spec = QuantSpec(3, False, Granularity.PER_GROUP, 16)
    result = gptq_quantize(weight, torch.eye(32), spec)
    assert result.weight.dtype == torch.bfloat16
    assert torch.equal(result.weight, fake_quantize(weight, spec))


def _correlated_layer(seed: int, out: int = 24, n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    mixing = torch.randn(n, n, generator=gen) / n**0.5 + torch.eye(n)
    x = torch.randn(4, 32, n, generator=gen) @ mixing * (torch.rand(n, generator=gen) * 2 + 0.1)
    weight = torch.randn(out, n, generator=gen)
    return weight, x


def _output_error(weight: torch.Tensor, quantized: torch.Tensor, x: torch.Tensor) -> float:
    return float(torch.linalg.norm(x.reshape(-1, x.shape[-1]) @ (weight - quantized).T))


@pytest.mark.parametrize(
    ("spec", "cfg"),
    [
        (QuantSpec(3, False, Granularity.PER_GROUP, 16), GPTQConfig()),
        (QuantSpec(4, True, Granularity.PER_CHANNEL), GPTQConfig(block_size=16)),
        (QuantSpec(3, False, Granularity.PER_GROUP, 16), GPTQConfig(act_order=True, block_size=24)),
        (QuantSpec(4, True, Granularity.PER_GROUP, 32), GPTQConfig(act_order=True, static_groups=True)),
    ],
    ids=["w3-asym-g16", "w4-sym-channel", "w3-g16-act-order", "w4-g32-act-order-static"],
)
def test_gptq_beats_rtn_on_average_over_seeded_layers(spec: QuantSpec, cfg: GPTQConfig) -> None:
    """GPTQ is greedy, so this is a law in expectation: the mean error over 8 fixed seeds."""
    gptq_errors, rtn_errors = [], []
    for seed in range(8):
        weight, x = _correlated_layer(seed)
        result = gptq_quantize(weight, weighted_hessian(x), spec, cfg)
        gptq_errors.append(_output_error(weight, result.weight, x))
        rtn_errors.append(_output_error(weight, fake_quantize(weight, spec), x))
    assert sum(gptq_errors) < 0.9 * sum(rtn_errors)


def test_weighted_hessian_protects_the_weighted_tokens() -> None:
    """With lambda on half of the tokens, their error is lower than under the unweighted Hessian."""
    spec = QuantSpec(3, False, Granularity.PER_GROUP, 16)
    weighted_err, plain_err = 0.0, 0.0
    for seed in range(6):
        weight, x = _correlated_layer(seed)
        x = x.clone()
        x[:, :16] = x[:, :16] @ torch.diag(torch.linspace(3, 0.1, x.shape[-1]))  # a different distribution
        lam = torch.zeros(x.shape[:2])
        lam[:, :16] = 1 / 16
        focus = x[:, :16]
        weighted = gptq_quantize(weight, weighted_hessian(x, lam), spec).weight
        plain = gptq_quantize(weight, weighted_hessian(x), spec).weight
        weighted_err += _output_error(weight, weighted, focus)
        plain_err += _output_error(weight, plain, focus)
    assert weighted_err < plain_err


def test_uniform_weights_bit_identical_to_none() -> None:
    weight, x = _correlated_layer(3)
    types = torch.full(x.shape[:2], int(TokenType.TEXT))
    types[0, 20:] = int(TokenType.PAD)
    types[1, :5] = int(TokenType.VISION)
    spec = QuantSpec(3, False, Granularity.PER_GROUP, 16)
    h_none = weighted_hessian(x, None, types)
    h_uniform = weighted_hessian(x, uniform_token_weights(types), types)
    assert torch.equal(h_none, h_uniform)
    a = gptq_quantize(weight, h_none, spec, GPTQConfig(act_order=True))
    b = gptq_quantize(weight, h_uniform, spec, GPTQConfig(act_order=True))
    assert torch.equal(a.weight, b.weight) and torch.equal(a.codes, b.codes) and a.loss == b.loss


def test_dead_inputs_are_rtn_and_finite() -> None:
    weight, x = _correlated_layer(1)
    x = x.clone()
    x[..., [3, 40]] = 0.0
    spec = QuantSpec(4, True, Granularity.PER_CHANNEL)
    hessian = weighted_hessian(x)
    assert hessian[3, 3] == 0 and hessian[40, 40] == 0
    result = gptq_quantize(weight, hessian, spec)
    assert bool(torch.isfinite(result.weight).all())
    rtn = fake_quantize(weight, spec)
    assert torch.equal(result.weight[:, 3], rtn[:, 3]) and torch.equal(result.weight[:, 40], rtn[:, 40])


def test_non_positive_definite_hessian_retries_with_more_damping(caplog: pytest.LogCaptureFixture) -> None:
    # eigenvalues -0.5 and 2.5: damp 0.01 and 0.1 fail, 1.0 (x mean diag 1) makes it PD
    hessian = torch.tensor([[1.0, 1.5], [1.5, 1.0]])
    with caplog.at_level(logging.WARNING, logger="qigbench.solvers.gptq_solver"):
        result = gptq_quantize(torch.randn(3, 2), hessian, QuantSpec(4, True, Granularity.PER_CHANNEL))
    assert result.damp_used == pytest.approx(1.0)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert all("not positive definite" in m and "retrying" in m for m in messages)


def test_hopeless_hessian_names_the_fix() -> None:
    hessian = torch.tensor([[1.0, 30.0], [30.0, 1.0]])
    with pytest.raises(SolverError, match="more calibration samples"):
        spec = QuantSpec(4, True, Granularity.PER_CHANNEL)
        gptq_quantize(torch.randn(3, 2), hessian, spec, GPTQConfig(max_damp_retries=1))


def test_bad_inputs_are_refused() -> None:
    spec = QuantSpec(4, False, Granularity.PER_GROUP, 16)
    with pytest.raises(SolverError, match="Hessian has shape"):
        gptq_quantize(torch.randn(4, 32), torch.eye(16), spec)
    with pytest.raises(FormatError, match="does not divide"):
        gptq_quantize(torch.randn(4, 24), torch.eye(24), spec)
    with pytest.raises(SolverError, match="activations"):
        gptq_quantize(torch.randn(4, 8), torch.eye(8), QuantSpec(8, True, Granularity.PER_TOKEN))
    with pytest.raises(SolverError, match="block_size"):
        GPTQConfig(block_size=0)


@pytest.mark.parametrize("act_order", [False, True])
def test_block_size_does_not_change_the_result(act_order: bool) -> None:
    """Lazy batch updates are exact maths, and group parameters see every pending update: the block
    size (even one that splits groups, 3 vs group 16) changes nothing beyond float rounding."""
    weight, x = _correlated_layer(4)
    hessian = weighted_hessian(x)
    spec = QuantSpec(3, False, Granularity.PER_GROUP, 16)
    results = [
        gptq_quantize(weight, hessian, spec, GPTQConfig(block_size=b, act_order=act_order)) for b in (3, 10, 128)
    ]
    for other in results[1:]:
        same = (other.codes == results[0].codes).float().mean()
        assert float(same) > 0.99
        assert other.loss == pytest.approx(results[0].loss, rel=1e-3)
