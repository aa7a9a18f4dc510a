"""The ablation proxies (Table 1) and MBQ's modality weights compute what they document."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sens_blocks import WEIGHT_ACT, make_target

from qigbench.sensitivity import (
    AttributionTarget,
    QIGConfig,
    SensitivityError,
    get_provider,
    leave_one_out_scores,
    mbq_coefficients,
    mbq_ratios,
    modality_weights,
    qig_objective,
    received_attention,
)
from qigbench.tokens import TokenType


def test_leave_one_out_batched_equals_a_plain_loop() -> None:
    t = make_target(b=2, t=7, fmt=WEIGHT_ACT)
    assert t.x_q is not None
    G = qig_objective(t, QIGConfig())
    fast = leave_one_out_scores(G, t.x, t.x_q, chunk_size=3)
    with torch.no_grad():
        g0 = G(t.x)
        slow = torch.zeros(2, 7)
        for i in range(7):
            x = t.x.clone()
            x[:, i] = t.x_q[:, i]
            slow[:, i] = (G(x) - g0).abs()
    torch.testing.assert_close(fast, slow)
    out = get_provider("leave_one_out", chunk_size=4)(t)
    torch.testing.assert_close(out.raw, slow)
    assert out.diagnostics["reference"] == "quantized"


def test_gradient_provider_is_mean_abs_input_gradient_of_the_loss() -> None:
    t = make_target(b=2, t=5)
    w = torch.randn(16)

    def loss(x: torch.Tensor) -> torch.Tensor:
        return (t.f_fp(x) * w).sum()

    out = get_provider("gradient", loss_fn=loss)(t)
    x = t.x.clone().requires_grad_(True)
    loss(x).backward()
    assert x.grad is not None
    torch.testing.assert_close(out.raw, x.grad.abs().mean(-1))
    assert get_provider("gradient")(t).diagnostics["loss"] == "qig_error"


def test_attention_provider_is_received_attention_over_heads_and_real_queries() -> None:
    t = make_target(b=1, t=4, n_pad=[1])
    probs = torch.zeros(1, 2, 4, 4)
    probs[0, 0, :, 0] = 1.0  # head 0: everyone looks at token 0 (a sink)
    probs[0, 1, :, 2] = 1.0  # head 1: everyone looks at token 2
    probs[0, :, 3] = 0.25  # the padding query looks everywhere: must not count
    probs[0, :, 3, 3] = 0.25
    t.attention_probs = probs
    torch.testing.assert_close(received_attention(probs, t.token_types), torch.tensor([[0.5, 0.0, 0.5, 0.0]]))
    out = get_provider("attention")(t)
    torch.testing.assert_close(out.weights, torch.tensor([[0.5, 0.0, 0.5, 0.0]]))
    with pytest.raises(SensitivityError, match="attention_probs"):
        get_provider("attention")(make_target())
    via_fn = get_provider("attention", attention_fn=lambda target: probs)(make_target(b=1, t=4, n_pad=[1]))
    torch.testing.assert_close(via_fn.weights, out.weights)


@st.composite
def layouts(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    b, t = draw(st.integers(1, 3)), draw(st.integers(2, 12))
    types = draw(st.lists(st.sampled_from(list(TokenType)), min_size=b * t, max_size=b * t))
    tt = torch.tensor([int(v) for v in types]).view(b, t)
    answer = torch.tensor(draw(st.lists(st.booleans(), min_size=b * t, max_size=b * t))).view(b, t)
    answer &= tt == TokenType.TEXT
    return tt, answer


@settings(max_examples=40, deadline=None)
@given(layout=layouts(), r=st.one_of(st.just(0.0), st.floats(1e-3, 5.0)), h=st.integers(1, 8), seed=st.integers(0, 100))
def test_mbq_coefficients_reproduce_the_mbq_loss_exactly(
    layout: tuple[torch.Tensor, torch.Tensor], r: float, h: int, seed: int
) -> None:
    tt, answer = layout
    torch.manual_seed(seed)
    d = torch.randn(*tt.shape, h, dtype=torch.float64)  # f(x, w) - f(x, w_hat)
    vision = tt == TokenType.VISION
    n_a, n_v = int(answer.sum()), int(vision.sum())
    mbq = (d.abs().sum(-1)[answer].sum() + r * d.abs().sum(-1)[vision].sum()) / (h * max(n_a + n_v, 1))
    c = mbq_coefficients(tt, answer, r).double()
    torch.testing.assert_close((c * d.abs().mean(-1)).sum(), mbq)
    # row-normalised lambda: per row, the same loss up to a positive constant (same arg-min over scales)
    lam = modality_weights(tt, answer, r)
    assert (lam[tt == TokenType.PAD] == 0).all()
    for b in range(tt.shape[0]):
        denom = float(answer[b].sum()) + r * float(vision[b].sum())
        if denom > 0:
            expected = (answer[b].double() + r * vision[b].double()) / denom
            torch.testing.assert_close(lam[b].double(), expected, rtol=1e-6, atol=1e-7)


def test_mbq_ratios_with_and_without_the_median_floor() -> None:
    gv, gt = [1.0, 4.0, 9.0, 0.5, 2.0], [2.0, 2.0, 3.0, 1.0, 1.0]
    torch.testing.assert_close(mbq_ratios(gv, gt), torch.tensor([0.5, 2.0, 3.0, 0.5, 2.0]))
    torch.testing.assert_close(mbq_ratios(gv, gt, floor="median"), torch.tensor([2.0, 2.0, 3.0, 2.0, 2.0]))
    with pytest.raises(SensitivityError, match="answer tokens"):
        mbq_ratios([1.0], [0.0])
    with pytest.raises(SensitivityError, match="same length"):
        mbq_ratios([1.0, 2.0], [1.0])


def test_modality_provider_picks_the_attention_or_mlp_ratio_of_the_block() -> None:
    t = make_target(b=1, t=6)
    t.token_types = torch.tensor([[TokenType.SPECIAL, 2, 2, 1, 1, TokenType.PAD]])
    t.answer_mask = torch.tensor([[False, False, False, True, True, False]])
    provider = get_provider("modality", attention_ratios=[0.1, 3.0], mlp_ratios=[0.2, 1.0])
    t.block_index, t.group = 1, "qkv"
    torch.testing.assert_close(provider(t).weights, torch.tensor([[0, 3, 3, 1, 1, 0]]) / 8.0)
    t.group = "down"
    torch.testing.assert_close(provider(t).weights, torch.tensor([[0, 1, 1, 1, 1, 0]]) / 4.0)
    t.block_index = 2
    with pytest.raises(SensitivityError, match="block 2"):
        provider(t)


def test_weight_activation_targets_accept_zero_baseline_for_every_proxy() -> None:
    t = make_target(b=1, t=5)
    assert isinstance(t, AttributionTarget) and t.x_q is None
    assert get_provider("leave_one_out")(t).diagnostics["reference"] == "zero"
