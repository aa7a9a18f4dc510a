"""CWE scale search (AWQ / MBQ / QIG): the weighted loss, ties, restoration, uniform == unweighted."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from qigbench.quant import fake_quantize, parse_format
from qigbench.solvers import (
    ScaleSearchConfig,
    SolverError,
    awq_scales,
    evaluate_scales,
    search_scales,
)
from qigbench.solvers.scale_search import scaled_linears, weighted_token_loss
from qigbench.tokens import TokenType, uniform_token_weights

FORMATS = ["W3A16g8", "W4A8", "W4A16gc-sym"]


class TwoHeads(nn.Module):
    """A toy inspected module: two linears reading the same input, mixed non-linearly."""

    def __init__(self, hidden: int, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.a = nn.Linear(hidden, 8)
        self.b = nn.Linear(hidden, 8, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) * torch.sigmoid(self.b(x))


def _inputs(seed: int, batch: int = 3, tokens: int = 6, hidden: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, tokens, hidden, generator=gen) * (torch.rand(hidden, generator=gen) * 4 + 0.1)
    types = torch.full((batch, tokens), int(TokenType.TEXT))
    types[0, -2:] = int(TokenType.PAD)
    types[1, :2] = int(TokenType.VISION)
    return x, types


@settings(deadline=None, max_examples=20)
@given(
    c=st.floats(1e-3, 1e3),
    seed=st.integers(0, 2**16),
    fmt=st.sampled_from(FORMATS),
    loss=st.sampled_from(["mse", "mae"]),
)
def test_constant_activations_choose_alpha_zero(c: float, seed: int, fmt: str, loss: str) -> None:
    """mean|x| equal on every channel -> every candidate is s = 1 -> all losses tie -> first grid point."""
    gen = torch.Generator().manual_seed(seed)
    x = c * torch.sign(torch.randn(2, 5, 16, generator=gen) + 0.01)
    module = TwoHeads(16, seed)
    cfg = ScaleSearchConfig(n_grid=5, loss=loss)  # type: ignore[arg-type]
    result = search_scales(x, [module.a, module.b], module, parse_format(fmt), cfg=cfg)
    assert result.alpha == 0.0
    assert torch.equal(result.scales, torch.ones(16))
    assert len(set(result.losses)) == 1


@pytest.mark.parametrize("fmt", FORMATS)
def test_uniform_weights_bit_identical_to_none(fmt: str) -> None:
    x, types = _inputs(0)
    module = TwoHeads(16, 0)
    cfg = ScaleSearchConfig(n_grid=8)
    qfmt = parse_format(fmt)
    implicit = search_scales(x, [module.a, module.b], module, qfmt, None, types, cfg)
    explicit = search_scales(x, [module.a, module.b], module, qfmt, uniform_token_weights(types), types, cfg)
    assert implicit.alpha == explicit.alpha
    assert torch.equal(implicit.scales, explicit.scales)
    assert implicit.losses == explicit.losses


@pytest.mark.parametrize("fmt", FORMATS)
def test_weights_restored_exactly(fmt: str) -> None:
    x, types = _inputs(1)
    module = TwoHeads(16, 1)
    before = {name: (p.data_ptr(), p.data.clone()) for name, p in module.named_parameters()}
    search_scales(x, [module.a, module.b], module, parse_format(fmt), None, types, ScaleSearchConfig(n_grid=4))
    for name, p in module.named_parameters():
        pointer, values = before[name]
        assert p.data_ptr() == pointer and torch.equal(p.data, values)
    assert not module.a._forward_pre_hooks and not module.b._forward_pre_hooks


def test_weights_restored_when_compared_fails() -> None:
    x, _ = _inputs(2)
    linear = nn.Linear(16, 4)
    original = linear.weight.data.clone()
    calls = {"n": 0}

    def compared(inp: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("boom")
        return linear(inp)

    with pytest.raises(RuntimeError, match="boom"):
        search_scales(x, [linear], compared, parse_format("W4A8"))
    assert torch.equal(linear.weight.data, original) and not linear._forward_pre_hooks


@pytest.mark.parametrize("fmt", ["W3A16g8", "W4A8"])
def test_candidate_loss_matches_hand_computation(fmt: str) -> None:
    """Weight-only: x @ (Q(W s) / s)^T; weight-activation: Q_X(x / s) @ Q(W s)^T; weighted per token."""
    qfmt = parse_format(fmt)
    x, types = _inputs(3)
    linear = nn.Linear(16, 8)
    lam = torch.rand(x.shape[:2]) * (types != TokenType.PAD)
    lam = lam / lam.sum(-1, keepdim=True)
    s = awq_scales(x.abs().reshape(-1, 16).mean(0), 0.5)
    got = evaluate_scales(x, [linear], linear, qfmt, [s], lam, types, ScaleSearchConfig(loss="mae"))[0]
    w_q = fake_quantize(linear.weight.detach() * s, qfmt.weight)
    with torch.no_grad():
        if qfmt.activation is None:
            y_q = x @ (w_q / s).T + linear.bias
        else:
            assert qfmt.activation is not None
            y_q = fake_quantize(x / s, qfmt.activation) @ w_q.T + linear.bias
        y_fp = linear(x)
    expected = float((lam * (y_fp - y_q).abs().mean(-1)).sum() / x.shape[0])
    assert got == pytest.approx(expected, rel=1e-5)


def test_outlier_channels_get_scaled() -> None:
    """Salient input channels (large |x|) are what AWQ protects: alpha > 0 must beat plain RTN."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(4, 16, 32, generator=gen)
    x[..., :3] *= 30.0
    linear = nn.Linear(32, 16)
    result = search_scales(x, [linear], linear, parse_format("W3A16g16"))
    assert result.alpha > 0 and result.best_loss < result.losses[0]
    assert float((result.scales.max() * result.scales.min()).sqrt()) == pytest.approx(1.0)


def test_duo_scaling_and_chunking() -> None:
    x, types = _inputs(4, batch=5)
    module = TwoHeads(16, 4)
    w4a8 = parse_format("W4A8")
    whole = search_scales(x, [module.a, module.b], module, w4a8, None, types, ScaleSearchConfig(n_grid=6))
    chunked = search_scales(
        x, [module.a, module.b], module, w4a8, None, types, ScaleSearchConfig(n_grid=6, batch_chunk=2)
    )
    assert chunked.alpha == whole.alpha
    assert chunked.losses == pytest.approx(whole.losses, rel=1e-5)
    duo = search_scales(x, [module.a, module.b], module, w4a8, None, types, ScaleSearchConfig(duo_scaling=True))
    assert bool(torch.isfinite(duo.scales).all()) and bool((duo.scales > 0).all())


def test_weighted_token_loss_ignores_padding_garbage() -> None:
    y_fp = torch.zeros(2, 3, 4)
    y_q = torch.ones(2, 3, 4)
    y_q[0, 2] = float("nan")
    lam = torch.tensor([[0.5, 0.5, 0.0], [0.25, 0.25, 0.5]])
    assert float(weighted_token_loss(y_fp, y_q, lam, "mse")) == pytest.approx(2.0)


def test_tuple_outputs_and_bad_inputs() -> None:
    x, _ = _inputs(6)
    linear = nn.Linear(16, 4)
    w4g8 = parse_format("W4A16g8")
    result = search_scales(x, [linear], lambda inp: (linear(inp), None), w4g8, cfg=ScaleSearchConfig(n_grid=2))
    assert result.scales.shape == (16,)
    with pytest.raises(SolverError, match="same input"):
        search_scales(x, [nn.Linear(8, 4)], linear, parse_format("W4A16g8"))
    with pytest.raises(SolverError, match="at least one linear"):
        search_scales(x, [], linear, parse_format("W4A16g8"))
    with pytest.raises(SolverError, match="n_grid"):
        ScaleSearchConfig(n_grid=0)
    with pytest.raises(SolverError, match="must return a tensor"):
        search_scales(x, [linear], lambda inp: "nope", parse_format("W4A16g8"))


@pytest.mark.parametrize("fmt", FORMATS)
def test_explicit_target_replaces_the_same_input_reference(fmt: str) -> None:
    """``target`` = the fp output on the same input changes nothing (chunked too); another target
    is what each candidate is scored against; a wrongly shaped one is refused."""
    x, types = _inputs(5)
    module = TwoHeads(16, 5)
    linears = [module.a, module.b]
    cfg = ScaleSearchConfig(n_grid=5, batch_chunk=2)
    with torch.no_grad():
        same = module(x)
        other = module(x * 1.5)
    qfmt = parse_format(fmt)
    plain = search_scales(x, linears, module, qfmt, token_types=types, cfg=cfg)
    assert search_scales(x, linears, module, qfmt, token_types=types, cfg=cfg, target=same).losses == plain.losses
    moved = search_scales(x, linears, module, qfmt, token_types=types, cfg=cfg, target=other)
    assert moved.losses != plain.losses
    ones = torch.ones(16)  # alpha = 0: plain Q(W); its loss by hand against the other target
    with scaled_linears(linears, ones, parse_format(fmt)), torch.no_grad():
        y_q = module(x)
    want = float(weighted_token_loss(other, y_q, uniform_token_weights(types), "mse") / x.shape[0])
    assert moved.losses[0] == pytest.approx(want, rel=1e-5)
    with pytest.raises(SolverError, match="target has shape"):
        search_scales(x, linears, module, qfmt, token_types=types, cfg=cfg, target=other[:, :2])
