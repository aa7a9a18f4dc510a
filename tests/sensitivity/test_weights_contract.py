"""lambda contract for every provider: >= 0, rows sum to 1 over non-padding, exactly 0 on padding."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sens_blocks import WEIGHT_ACT, WEIGHT_ONLY, make_target

from qigbench.sensitivity import (
    AttributionTarget,
    SensitivityError,
    TokenWeights,
    available_providers,
    get_provider,
)
from qigbench.tokens import TokenType, uniform_token_weights


def assert_contract(out: TokenWeights, token_types: torch.Tensor) -> None:
    w = out.weights
    pad = token_types == TokenType.PAD
    assert w.shape == token_types.shape
    assert torch.isfinite(w).all()
    assert (w >= 0).all()
    assert (w[pad] == 0).all()
    has_tokens = (~pad).any(dim=-1)
    torch.testing.assert_close(w.sum(-1)[has_tokens], torch.ones(int(has_tokens.sum())), rtol=0, atol=1e-5)


@st.composite
def padded_targets(draw: st.DrawFn) -> AttributionTarget:
    b = draw(st.integers(1, 3))
    t = draw(st.integers(2, 10))
    n_pad = draw(st.lists(st.integers(0, t - 1), min_size=b, max_size=b))
    return make_target(
        b=b,
        t=t,
        h=8,
        seed=draw(st.integers(0, 1000)),
        fmt=draw(st.sampled_from([WEIGHT_ONLY, WEIGHT_ACT])),
        n_pad=n_pad,
        pad_left=draw(st.booleans()),
    )


@settings(max_examples=25, deadline=None)
@given(target=padded_targets(), clipping=st.sampled_from(["none", "top5-zero", "top5-mean", "iqr"]))
def test_qig_weights_satisfy_the_contract(target: AttributionTarget, clipping: str) -> None:
    out = get_provider("qig", steps=4, clipping=clipping)(target)
    assert_contract(out, target.token_types)
    assert out.diagnostics["steps_used"] in (0, 4)


@settings(max_examples=10, deadline=None)
@given(target=padded_targets(), name=st.sampled_from(["uniform", "gradient", "leave_one_out"]))
def test_other_providers_satisfy_the_contract(target: AttributionTarget, name: str) -> None:
    assert_contract(get_provider(name)(target), target.token_types)


def test_uniform_provider_is_bit_identical_to_the_shared_definition() -> None:
    t = make_target(b=3, t=6, n_pad=[0, 2, 5])
    assert torch.equal(get_provider("uniform")(t).weights, uniform_token_weights(t.token_types))


def test_padding_values_do_not_leak_into_weights() -> None:
    # garbage in the padded positions' hidden states must not change the real tokens' weights
    # (for a module whose rows/tokens are independent, as here)
    t1 = make_target(b=1, t=8, n_pad=[3], seed=5)
    x2 = t1.x.clone()
    x2[:, -3:] = 1e3
    t2 = AttributionTarget(t1.f_fp, t1.f_q, x2, None, t1.token_types)
    w1, w2 = (get_provider("qig", steps=4)(t).weights for t in (t1, t2))
    torch.testing.assert_close(w1, w2)


def test_degenerate_input_falls_back_to_uniform_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    t = make_target(b=2, t=6, fmt=WEIGHT_ACT, n_pad=[0, 2])
    same = AttributionTarget(t.f_fp, t.f_q, t.x, t.x.clone(), t.token_types)  # x == x_q (W4A8 block 0 qkv)
    out = get_provider("qig")(same)
    assert torch.equal(out.weights, uniform_token_weights(t.token_types))
    assert out.diagnostics["degenerate_fallback"] is True
    assert out.diagnostics["fallback_rows"] == [0, 1]
    assert out.diagnostics["steps_used"] == 0
    assert "uniform" in caplog.text


def test_degenerate_row_among_live_rows_only_that_row_falls_back() -> None:
    t = make_target(b=3, t=6, fmt=WEIGHT_ACT)
    assert t.x_q is not None
    x_q = t.x_q.clone()
    x_q[1] = t.x[1]
    out = get_provider("qig", steps=4)(AttributionTarget(t.f_fp, t.f_q, t.x, x_q, t.token_types))
    assert out.diagnostics["fallback_rows"] == [1]
    assert torch.equal(out.weights[1], uniform_token_weights(t.token_types)[1])
    assert not torch.equal(out.weights[0], uniform_token_weights(t.token_types)[0])


def test_qig_raw_scores_are_the_token_mean_of_abs_attributions() -> None:
    from qigbench.sensitivity import QIGConfig, integrated_gradients, qig_objective

    t = make_target(b=2, t=5, fmt=WEIGHT_ONLY)
    cfg = QIGConfig(steps=8, clipping="none")
    out = get_provider("qig", steps=8, clipping="none")(t)
    attr, _, _ = integrated_gradients(qig_objective(t, cfg), t.x, torch.zeros_like(t.x), 8)
    torch.testing.assert_close(out.raw, attr.abs().mean(-1))
    torch.testing.assert_close(out.weights, out.raw / out.raw.sum(-1, keepdim=True))
    assert out.diagnostics["baseline"] == "zero"
    assert out.diagnostics["completeness_residual"] >= 0


def test_registry_lists_every_provider_and_refuses_bad_names_and_options() -> None:
    assert set(available_providers()) >= {"uniform", "qig", "gradient", "attention", "leave_one_out", "modality"}
    with pytest.raises(SensitivityError, match="choose one of"):
        get_provider("saliency")
    with pytest.raises(SensitivityError, match="qig"):
        get_provider("qig", stepz=3)
    with pytest.raises(SensitivityError, match="quadrature"):
        get_provider("qig", quadrature="simpson")
    with pytest.raises(SensitivityError, match="options"):
        get_provider("uniform", steps=3)


def test_target_shapes_are_checked_with_a_fix() -> None:
    t = make_target()
    with pytest.raises(SensitivityError, match="token_types"):
        AttributionTarget(t.f_fp, t.f_q, t.x, None, t.token_types[:, :-1])
    with pytest.raises(SensitivityError, match="x_q"):
        AttributionTarget(t.f_fp, t.f_q, t.x, t.x[:, :-1], t.token_types)
    with pytest.raises(SensitivityError, match="zero"):
        get_provider("qig", baseline="quantized")(t)


def test_providers_call_f_with_copy_major_multiples_of_B_rows() -> None:
    # The engine's closures repeat per-sample tensors (attention masks, rotary embeddings) with
    # ``.repeat(N // B, ...)``; a per-sample factor closed over the same way checks the stacking order:
    # if copies were stacked sample-major, rows would get another sample's factor and results would
    # differ from the unbatched computation.
    base = make_target(b=3, t=5, fmt=WEIGHT_ACT, seed=11)
    factor = torch.tensor([1.0, -2.0, 5.0])[:, None, None]
    seen: list[int] = []

    def per_sample(f: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        def call(x: torch.Tensor) -> torch.Tensor:
            seen.append(x.shape[0])
            assert x.shape[0] % 3 == 0
            return f(x) * factor.repeat(x.shape[0] // 3, 1, 1)

        return call

    t = AttributionTarget(per_sample(base.f_fp), per_sample(base.f_q), base.x, base.x_q, base.token_types)
    # atol: a leave-one-out score is a difference of two sums over every token, G(x) - G(x without t),
    # so it carries G's rounding (measured 1.8e-7 between chunkings with MKL's AVX2 kernels, scores
    # up to 3.5e-3), not a rounding relative to the score; QIG's agree to 6e-11
    cases: list[tuple[str, dict[str, Any], float]] = [
        ("qig", {"steps": 6, "chunk_size": 4}, 1e-7),
        ("qig", {"steps": 6, "objective": "fx_minus_f0"}, 1e-7),
        ("leave_one_out", {"chunk_size": 2}, 1e-6),
    ]
    for name, cfg, atol in cases:
        seen.clear()
        fast = get_provider(name, **cfg)(t)
        assert max(seen) > 3  # really batched
        slow_cfg = {**cfg, "batched": False} if name == "qig" else {**cfg, "chunk_size": 1}
        slow = get_provider(name, **slow_cfg)(t)
        torch.testing.assert_close(fast.raw, slow.raw, rtol=1e-5, atol=atol)
