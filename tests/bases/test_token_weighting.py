"""The glue between a block's scaling group and the token-weight providers
(:mod:`qigbench.bases.token_weighting`), on tiny-qwen2vl's real block contexts.

- ``f_q`` is a copy of the inspected module whose linears are RTN-quantized (straight-through),
  the fp module is left as it was;
- ``x_q`` is None (zero baseline) for weight-only formats unless the provider asks for it, the
  quantized-path input otherwise (equal to ``x`` where nothing upstream is quantized yet);
- ``group_token_weights`` returns weights that keep the contract (>= 0, rows sum to 1 over the
  real tokens, exactly 0 on padding) and files them in the block's stats and artifacts.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from qigbench.bases.token_weighting import attribution_target, group_token_weights, make_provider
from qigbench.engine.context import BlockContext
from qigbench.errors import QigbenchError
from qigbench.quant import Granularity, QuantLinear, fake_quantize
from qigbench.sensitivity.leave_one_out import LeaveOneOutConfig, LeaveOneOutProvider
from qigbench.sensitivity.qig_provider import QIGConfig, QIGProvider, qig_objective
from qigbench.tokens import TokenType


def _linears(module: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in module.named_modules() if isinstance(m, (nn.Linear, QuantLinear))}


@pytest.mark.parametrize("group", ["qkv", "down"])  # the attention module (4 linears) and a lone linear
def test_f_q_is_an_rtn_copy_and_the_fp_module_is_untouched(block_contexts, group: str) -> None:  # type: ignore[no-untyped-def]
    ctx: BlockContext = block_contexts["W3A16g16"][1]
    inspect = ctx.group(group).inspect
    before = {n: m.weight.detach().clone() for n, m in _linears(inspect).items()}
    target = attribution_target(ctx, ctx.group(group))
    twin = target.f_q.module  # type: ignore[attr-defined]
    assert target.f_fp.module is inspect and twin is not inspect  # type: ignore[attr-defined]
    quantized = _linears(twin)
    assert set(quantized) == set(before) and quantized
    for name, weight in before.items():
        q = quantized[name]
        assert isinstance(q, QuantLinear) and q.straight_through
        assert torch.equal(q.weight, fake_quantize(weight, ctx.fmt.weight))
        fp = _linears(inspect)[name]
        assert type(fp) is nn.Linear and torch.equal(fp.weight, weight)  # the fp module as it was
    x = target.x
    assert not torch.equal(target.f_q(x), target.f_fp(x))  # the copy really computes with rounded weights


def test_weight_only_has_the_zero_baseline_unless_the_provider_asks(block_contexts) -> None:  # type: ignore[no-untyped-def]
    ctx: BlockContext = block_contexts["W3A16g16"][0]
    qkv, o = ctx.group("qkv"), ctx.group("o")
    plain = attribution_target(ctx, qkv)
    assert plain.x_q is None and not plain.weight_activation
    asked = attribution_target(ctx, qkv, quantized_reference=True)
    assert asked.x_q is not None and torch.equal(asked.x_q, asked.x)  # block 0, first group: nothing upstream
    later = attribution_target(ctx, o, quantized_reference=True)
    assert later.x_q is not None and later.x_q.shape == later.x.shape
    assert not torch.equal(later.x_q, later.x)  # o sees the error of the RTN-quantized q/k/v


def test_weight_activation_formats_always_have_the_quantized_path_input(block_contexts) -> None:  # type: ignore[no-untyped-def]
    ctx: BlockContext = block_contexts["W4A8"][0]
    target = attribution_target(ctx, ctx.group("gate_up"))
    assert target.weight_activation and target.x_q is not None
    assert not torch.equal(target.x_q, target.x)


@pytest.mark.parametrize("fmt", ["W3A16g16", "W4A8"])
@pytest.mark.parametrize("sensitivity", ["qig", "gradient", "leave_one_out", "attention", "uniform"])
def test_group_token_weights_keep_the_contract(block_contexts, fmt: str, sensitivity: str) -> None:  # type: ignore[no-untyped-def]
    ctx: BlockContext = block_contexts[fmt][1]
    provider = make_provider(sensitivity, QIGConfig())
    for name in ("qkv", "down"):
        lam = group_token_weights(provider, ctx, ctx.group(name))
        pad = ctx.token_types == TokenType.PAD
        assert pad.any() and lam.shape == ctx.token_types.shape
        assert (lam >= 0).all() and torch.isfinite(lam).all()
        assert torch.equal(lam[pad], torch.zeros_like(lam[pad]))
        torch.testing.assert_close(lam.sum(dim=1), torch.ones(lam.shape[0]), rtol=0, atol=1e-5)
        assert torch.equal(ctx.artifacts["token_weights"][name], lam.detach().cpu())
        if sensitivity != "uniform":  # informative: not the uniform weights
            assert lam[~pad].std() > 0
    assert ctx.stats["groups"]["qkv"]  # the provider's diagnostics are in the block's stats


def test_make_provider_gives_each_run_its_own_qig_counter() -> None:
    a, b = make_provider("qig", QIGConfig(steps=4)), make_provider("qig", QIGConfig(steps=4))
    assert isinstance(a, QIGProvider) and a.config.steps == 4 and a.counter is not b.counter
    with pytest.raises(QigbenchError, match=r"unknown sensitivity provider 'nope'; choose one of .*qig"):
        make_provider("nope", QIGConfig())


@pytest.mark.parametrize("group", ["qkv", "o", "gate_up", "down"])
def test_quantized_path_input_stops_early_and_equals_the_full_pass(block_contexts, group: str) -> None:  # type: ignore[no-untyped-def]
    """The exact shortcut behind x^q: the RTN twin's forward stops once the group's input is
    recorded. It must equal the input recorded by a full pass of the twin block, bit for bit."""
    from qigbench.bases.token_weighting import quantized_path_input, rtn_copy
    from qigbench.engine.replay import Recorder, run_calls

    ctx: BlockContext = block_contexts["W4A8"][1]
    g = ctx.group(group)
    twin = rtn_copy(ctx.block, ctx.linear_names(), ctx)
    assert ctx.q_inputs is not None
    with torch.no_grad(), Recorder({"x": twin.get_submodule(g.spec.inspect)}) as rec:
        run_calls(twin, ctx.calls, ctx.q_inputs, ctx.device)
    full = torch.cat([c.input() for c in rec.calls["x"]], dim=0)
    assert torch.equal(quantized_path_input(ctx, g), full)


def test_linear_groups_of_weight_only_formats_are_marked_for_the_one_point_shortcut(block_contexts) -> None:  # type: ignore[no-untyped-def]
    only, wa = block_contexts["W3A16g16"][1], block_contexts["W4A8"][1]
    assert [attribution_target(only, only.group(n)).linear for n in ("qkv", "o", "gate_up", "down")] == [
        False, True, False, True]  # fmt: skip
    assert not any(attribution_target(wa, wa.group(n)).linear for n in ("qkv", "o", "gate_up", "down"))
    provider = make_provider("qig", QIGConfig())
    group_token_weights(provider, only, only.group("down"))
    assert only.stats["groups"]["down"]["sens.shortcut_linear"] is True


def test_token_wise_groups_are_marked_for_the_leave_one_out_shortcut_where_activations_allow(block_contexts) -> None:  # type: ignore[no-untyped-def]
    """MLP and lone-linear groups are token-wise in weight-only and per-token-activation formats;
    the attention module never is, and neither is any group under a per-tensor activation scale."""
    for fmt in ("W3A16g16", "W4A8"):
        ctx = block_contexts[fmt][1]
        assert [attribution_target(ctx, ctx.group(n)).token_wise for n in ("qkv", "o", "gate_up", "down")] == [
            False, True, True, True], fmt  # fmt: skip
    ctx = block_contexts["W4A8"][1]
    fmt = ctx.fmt
    assert fmt.activation is not None
    per_tensor = dataclasses.replace(fmt.activation, granularity=Granularity.PER_TENSOR)
    ctx.fmt = dataclasses.replace(fmt, activation=per_tensor)
    try:
        assert not any(attribution_target(ctx, ctx.group(n)).token_wise for n in ("qkv", "o", "gate_up", "down"))
    finally:
        ctx.fmt = fmt


@pytest.mark.parametrize("fmt", ["W3A16g16", "W4A8"])
def test_leave_one_out_on_real_mlp_groups_takes_the_shortcut_and_equals_the_loop(block_contexts, fmt: str) -> None:  # type: ignore[no-untyped-def]
    ctx = block_contexts[fmt][1]
    for name in ("gate_up", "down"):
        target = attribution_target(ctx, ctx.group(name), quantized_reference=True)
        fast = LeaveOneOutProvider()(target)
        slow = LeaveOneOutProvider(LeaveOneOutConfig(token_wise=False))(target)
        assert fast.diagnostics["shortcut_token_wise"] and not slow.diagnostics["shortcut_token_wise"]
        assert fast.diagnostics["forwards_per_sample"] == 2
        # the loop subtracts two float32 sums over T tokens: its rounding (measured: 1.5e-7 of the sums,
        # up to 4% of a small token's score) is relative to those sums; the shortcut has none of it
        with torch.no_grad():
            sums = float(qig_objective(target, QIGConfig())(target.x).abs().max())
        torch.testing.assert_close(fast.raw, slow.raw, rtol=0.0, atol=1e-6 * sums)
