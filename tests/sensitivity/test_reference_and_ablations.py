"""Ablation switches (Tables 4, A1) and the released-code ``reference`` flags do what they document."""

from __future__ import annotations

import torch
from sens_blocks import WEIGHT_ACT, WEIGHT_ONLY, make_target

from qigbench.sensitivity import (
    AttributionTarget,
    QIGConfig,
    QIGProvider,
    SearchCounter,
    get_provider,
    integrated_gradients,
    iqr_clip,
)
from qigbench.tokens import TokenType, valid_mask


def _outlier_target(fmt: str) -> AttributionTarget:
    """A target whose scores have a clear outlier token (token 0 scaled up) so IQR clipping bites."""
    t = make_target(b=2, t=12, fmt=fmt, seed=4)
    x = t.x.clone()
    x[:, 0] *= 30
    from qigbench.quant import fake_quantize, parse_format

    spec = parse_format(fmt).activation
    x_q = fake_quantize(x, spec) if spec is not None else None
    return AttributionTarget(t.f_fp, t.f_q, x, x_q, t.token_types)


def test_iqr_clipping_changes_weights_and_equals_clip_of_normalised_raw() -> None:
    t = _outlier_target(WEIGHT_ONLY)
    out = get_provider("qig", steps=8)(t)
    none = get_provider("qig", steps=8, clipping="none")(t)
    assert not torch.allclose(out.weights, none.weights)
    mask = valid_mask(t.token_types)
    clipped = iqr_clip(none.weights, mask)
    torch.testing.assert_close(out.weights, clipped / clipped.sum(-1, keepdim=True))


def test_objectives_and_baselines_are_different_attributions() -> None:
    t = make_target(b=2, t=6, fmt=WEIGHT_ACT, seed=2)
    raws = {}
    for objective in ("fx", "fx_minus_f0", "fx_minus_fxq"):
        for baseline in ("zero", "quantized"):
            out = get_provider("qig", steps=8, objective=objective, baseline=baseline, clipping="none")(t)
            assert out.diagnostics["baseline"] == baseline
            raws[objective, baseline] = out.raw
    keys = list(raws)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            assert not torch.allclose(raws[a], raws[b]), (a, b)
    # "auto" = quantized when x_q exists (W-A), zero otherwise (weight-only): the paper's choice
    assert get_provider("qig", steps=2)(t).diagnostics["baseline"] == "quantized"
    assert get_provider("qig", steps=2)(make_target()).diagnostics["baseline"] == "zero"


def test_batched_provider_equals_sequential_provider() -> None:
    t = make_target(b=2, t=7, fmt=WEIGHT_ACT, n_pad=[0, 3])
    a = get_provider("qig", steps=12, chunk_size=5)(t)
    b = get_provider("qig", steps=12, batched=False)(t)
    torch.testing.assert_close(a.raw, b.raw, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(a.weights, b.weights, rtol=1e-5, atol=1e-7)


def test_adaptive_provider_records_the_steps_it_used() -> None:
    t = make_target(b=2, t=5)
    out = get_provider("qig", steps=2, adaptive=True, tolerance=1e-3, max_steps=64)(t)
    hist = out.diagnostics["adaptive_history"]
    assert out.diagnostics["steps_used"] == hist[-1][0]
    assert hist[-1][1] < 1e-3 or hist[-1][0] == 64
    assert out.diagnostics["completeness_residual"] == hist[-1][1]


# ------------------------------------------------------------------------------------------ reference


def test_warmup_counter_gives_uniform_vision_plus_answer_weights_for_the_first_five_calls() -> None:
    t = make_target(b=2, t=8, fmt=WEIGHT_ACT, n_pad=[0, 2])
    answer = torch.zeros_like(t.token_types, dtype=torch.bool)
    answer[:, 3:5] = True
    t.answer_mask = answer
    counter = SearchCounter()
    provider = get_provider("qig", steps=2, warmup_searches=5, counter=counter)
    tt = t.token_types
    keep = ((tt == TokenType.VISION) | answer) & (tt != TokenType.PAD)
    expected = keep.float() / keep.float().sum(-1, keepdim=True)
    for i in range(5):
        out = provider(t)
        assert out.diagnostics["warmup_uniform"] is True and out.diagnostics["call_index"] == i
        torch.testing.assert_close(out.weights, expected)
    assert counter.count == 5
    out = provider(t)
    assert "warmup_uniform" not in out.diagnostics
    assert counter.count == 6
    # the counter is an explicit object: a fresh provider starts again, a shared counter does not
    assert get_provider("qig", steps=2, warmup_searches=5)(t).diagnostics["warmup_uniform"]
    assert "warmup_uniform" not in get_provider("qig", steps=2, warmup_searches=5, counter=counter)(t).diagnostics


def test_reference_weights_padding_then_drops_it_for_the_solver() -> None:
    """Released code: padding takes part in normalisation and clipping (its share is reported);
    the solver contract (0 on padding, rows sum to 1) still holds for what is handed on."""
    t = make_target(b=2, t=8, n_pad=[3, 0])
    paper = get_provider("qig", steps=4)(t)
    ref = get_provider("qig", steps=4, mask_padding=False)(t)
    pad = t.token_types == TokenType.PAD
    assert (paper.weights[pad] == 0).all() and "padding_share" not in paper.diagnostics
    assert ref.diagnostics["padding_share"] > 0
    assert (ref.weights[pad] == 0).all()
    torch.testing.assert_close(ref.weights.sum(-1), torch.ones(2))


def test_reference_computes_but_does_not_apply_iqr_in_weight_activation_formats() -> None:
    wa = _outlier_target(WEIGHT_ACT)
    ref = get_provider("qig", steps=8, clip_in_wa=False)(wa)
    unclipped = get_provider("qig", steps=8, clipping="none")(wa)
    clipped = get_provider("qig", steps=8)(wa)
    torch.testing.assert_close(ref.weights, unclipped.weights)
    assert not torch.allclose(ref.weights, clipped.weights)
    assert ref.diagnostics["clipping_computed_not_applied"] is True
    # weight-only formats still clip
    wo = _outlier_target(WEIGHT_ONLY)
    torch.testing.assert_close(
        get_provider("qig", steps=8, clip_in_wa=False)(wo).weights, get_provider("qig", steps=8)(wo).weights
    )


def test_reference_quantized_branch_without_gradient() -> None:
    t = make_target(b=2, t=6, fmt=WEIGHT_ACT, seed=7)
    assert t.x_q is not None
    out = get_provider("qig", steps=8, clipping="none", quantized_no_grad=True)(t)
    default = get_provider("qig", steps=8, clipping="none")(t)

    def G(z: torch.Tensor) -> torch.Tensor:  # only the fp branch carries gradients
        return (t.f_fp(z) - t.f_q(z).detach()).abs().mean(-1).sum(-1)

    attr, _, _ = integrated_gradients(G, t.x, t.x_q, 8)
    torch.testing.assert_close(out.raw, attr.abs().mean(-1))
    assert not torch.allclose(out.raw, default.raw)


def test_reference_error_scale_multiplies_raw_scores_and_leaves_lambda() -> None:
    t = make_target(b=2, t=6, fmt=WEIGHT_ACT, seed=8)
    a = get_provider("qig", steps=4)(t)
    b = get_provider("qig", steps=4, error_scale=1000.0)(t)
    torch.testing.assert_close(b.raw, 1000 * a.raw, rtol=1e-4, atol=0)
    torch.testing.assert_close(b.weights, a.weights, rtol=1e-4, atol=1e-7)


def test_reference_switch_turns_every_flag_on_and_each_can_be_overridden() -> None:
    cfg = QIGConfig(reference=True)
    assert cfg.use_quantized_no_grad() and not cfg.use_clip_in_wa() and not cfg.use_mask_padding()
    assert cfg.n_warmup() == 5 and cfg.scale(weight_activation=True) == 1000 and cfg.scale(False) == 1
    paper = QIGConfig()
    assert not paper.use_quantized_no_grad() and paper.use_clip_in_wa() and paper.use_mask_padding()
    assert paper.n_warmup() == 0 and paper.scale(True) == 1
    assert QIGConfig(reference=True, mask_padding=True).use_mask_padding()
    provider = QIGProvider(QIGConfig(reference=True, steps=2))
    t = make_target(b=1, t=6, fmt=WEIGHT_ACT)
    outs = [provider(t) for _ in range(6)]
    assert all(o.diagnostics.get("warmup_uniform") for o in outs[:5]) and not outs[5].diagnostics.get("warmup_uniform")
