"""Every shortcut QIG takes by default gives the full computation's result (within float rounding).

* **linear**: a compared module linear in its input (a linear layer and its weight-only RTN twin)
  from the zero baseline: ``G(a x) = a G(x)``, the gradient is the same at every path point, so
  one point times the weight of the nodes with ``a > 0`` is the ``steps``-point quadrature.
* **no path**: ``x == x^q`` (W4A8 block 0's first group): every attribution is 0 and the weights
  fall back to uniform, so nothing is evaluated.

Each is compared against ``shortcuts=False`` (the same config running the whole quadrature), and
each must say in the diagnostics (the block stats) that it was taken.
"""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sens_blocks import WEIGHT_ACT, WEIGHT_ONLY, make_target, quantized_copy, token_types
from torch import nn

from qigbench.quant import parse_format
from qigbench.sensitivity import AttributionTarget
from qigbench.sensitivity.ig import QUADRATURES
from qigbench.sensitivity.qig_provider import QIGConfig, QIGProvider


class Counting(nn.Module):
    """Counts the rows it is called with (to prove a shortcut skipped the path)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += int(x.shape[0])
        return self.inner(x)  # type: ignore[no-any-return]


def _linear_target(b: int, t: int, h: int, seed: int, bias: bool, fmt: str = WEIGHT_ONLY) -> AttributionTarget:
    torch.manual_seed(seed)
    f = nn.Linear(h, h + 3, bias=bias).to(torch.float64)
    fq = quantized_copy(f, fmt)
    x = torch.randn(b, t, h, dtype=torch.float64) * 2
    types = token_types(b, t, seed, n_pad=[1] + [0] * (b - 1))
    return AttributionTarget(f_fp=Counting(f), f_q=fq, x=x, x_q=None, token_types=types, linear=True)


@settings(max_examples=40, deadline=None)
@given(
    b=st.integers(1, 3), t=st.integers(2, 6), seed=st.integers(0, 10_000), steps=st.integers(1, 12),
    rule=st.sampled_from(QUADRATURES), bias=st.booleans(), objective=st.sampled_from(["fx_minus_fxq", "fx_minus_f0"]),
)  # fmt: skip
def test_linear_module_one_point_equals_the_full_quadrature(
    b: int, t: int, seed: int, steps: int, rule: str, bias: bool, objective: str
) -> None:
    target = _linear_target(b, t, 16, seed, bias)
    cfg = QIGConfig(steps=steps, quadrature=rule, objective=objective)  # type: ignore[arg-type]
    fast = QIGProvider(cfg)(target)
    calls_fast = target.f_fp.rows  # type: ignore[attr-defined]
    full = QIGProvider(QIGConfig(steps=steps, quadrature=rule, objective=objective, shortcuts=False))(target)  # type: ignore[arg-type]
    assert fast.diagnostics["shortcut_linear"] is True and "shortcut_linear" not in full.diagnostics
    # one forward of the B rows (fx_minus_f0 also evaluates f(0) once, as the full computation does)
    assert fast.diagnostics["points_evaluated"] == 1 and calls_fast == b * (2 if objective == "fx_minus_f0" else 1)
    assert fast.diagnostics["steps_used"] == full.diagnostics["steps_used"] == steps
    # attributions accumulate in float32 either way (ig._grad_sum), hence float32 tolerances
    torch.testing.assert_close(fast.raw, full.raw, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(fast.weights, full.weights, rtol=1e-5, atol=1e-8)
    # the completeness check agrees without its two extra evaluations (G(0) = 0 here); it is exact
    # (Euler's theorem) for rules whose nodes are all > 0
    assert abs(fast.diagnostics["completeness_residual"] - full.diagnostics["completeness_residual"]) < 1e-5
    if rule in ("midpoint", "right", "gauss"):
        assert fast.diagnostics["completeness_residual"] < 1e-5


def test_linear_shortcut_only_where_it_is_exact() -> None:
    """Not with a nonzero baseline, not in W-A formats, not for a non-linear module, not for plain f."""
    target = _linear_target(2, 5, 16, 1, bias=True)
    provider = QIGProvider(QIGConfig(steps=4))
    zero = torch.zeros_like(target.x)
    assert provider.linear_exact(target, zero)
    assert not provider.linear_exact(target, target.x * 0.5)  # a quantized-path baseline
    assert not QIGProvider(QIGConfig(steps=4, objective="fx")).linear_exact(target, zero)  # f keeps its bias
    wa = _linear_target(2, 5, 16, 1, bias=True, fmt=WEIGHT_ACT)
    wa.weight_activation = True
    assert not provider.linear_exact(wa, zero)
    mlp = make_target(seed=3)  # Linear-SiLU-Linear: linear=False
    assert not provider.linear_exact(mlp, zero)
    assert "shortcut_linear" not in provider(mlp).diagnostics


def test_linear_shortcut_agrees_in_float32_too() -> None:
    torch.manual_seed(0)
    f = nn.Linear(64, 48)
    fq = quantized_copy(f, "W3A16g16")
    x = torch.randn(4, 9, 64) * 3
    target = AttributionTarget(f_fp=f, f_q=fq, x=x, x_q=None, token_types=token_types(4, 9, 0), linear=True)
    fast = QIGProvider(QIGConfig())(target)
    full = QIGProvider(QIGConfig(shortcuts=False))(target)
    assert fast.diagnostics["shortcut_linear"]
    torch.testing.assert_close(fast.weights, full.weights, rtol=1e-4, atol=1e-6)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), steps=st.integers(1, 9), rule=st.sampled_from(QUADRATURES))
def test_x_equal_to_the_baseline_runs_no_path_and_gives_the_full_result(seed: int, steps: int, rule: str) -> None:
    base = make_target(b=3, t=6, seed=seed, fmt=WEIGHT_ACT, n_pad=[0, 2, 0])
    counted = Counting(base.f_fp)
    target = AttributionTarget(f_fp=counted, f_q=base.f_q, x=base.x, x_q=base.x.clone(), token_types=base.token_types)
    fast = QIGProvider(QIGConfig(steps=steps, quadrature=rule))(target)  # type: ignore[arg-type]
    assert counted.rows == 0 and fast.diagnostics["shortcut_no_path"] and fast.diagnostics["degenerate_fallback"]
    full = QIGProvider(QIGConfig(steps=steps, quadrature=rule, shortcuts=False))(target)  # type: ignore[arg-type]
    assert counted.rows > 0 and "shortcut_no_path" not in full.diagnostics
    torch.testing.assert_close(fast.weights, full.weights, rtol=0, atol=0)


def test_shortcuts_are_not_part_of_a_label_or_the_stored_config() -> None:
    from qigbench.config import changed_fields, config_to_dict

    off = QIGConfig(shortcuts=False, chunk_size=3, batched=False)
    assert changed_fields(off, QIGConfig()) == {}
    assert "shortcuts" not in config_to_dict(QIGConfig())
    assert parse_format(WEIGHT_ONLY).weight_only


def _linear_wa_target(b: int, t: int, seed: int, fmt: str, bias: bool, baseline: str) -> AttributionTarget:
    from qigbench.quant import fake_quantize

    torch.manual_seed(seed)
    f = nn.Linear(16, 12, bias=bias)
    fq = quantized_copy(f, fmt)
    x = torch.randn(b, t, 16) * 2
    spec = parse_format(fmt).activation
    if baseline == "quantized-input" and spec is not None:
        x_q = fake_quantize(x, spec)
    else:  # a quantized-path input: x plus upstream quantization error
        x_q = x + 0.1 * torch.randn(b, t, 16)
    return AttributionTarget(f_fp=Counting(f), f_q=fq, x=x, x_q=x_q, token_types=token_types(b, t, seed),
                             weight_activation=spec is not None, linear_weights=(f.weight, fq.weight))  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(
    b=st.integers(1, 3), t=st.integers(2, 6), seed=st.integers(0, 10_000), steps=st.integers(1, 10),
    rule=st.sampled_from(QUADRATURES), bias=st.booleans(), fmt=st.sampled_from([WEIGHT_ACT, WEIGHT_ONLY]),
    objective=st.sampled_from(["fx_minus_fxq", "fx_minus_f0", "fx"]),
    baseline=st.sampled_from(["quantized-input", "path"]),
    reference=st.booleans(), chunk=st.sampled_from([None, 1, 3]),
)  # fmt: skip
def test_linear_module_needs_no_backward_pass(
    b: int, t: int, seed: int, steps: int, rule: str, bias: bool, fmt: str, objective: str, baseline: str,
    reference: bool, chunk: int | None,
) -> None:  # fmt: skip
    """A linear compared module in any format, from any baseline: the summed signs of the forwards
    times W - W_q give the same attributions as autograd point by point (reference mode's no-grad
    f_q and x1000 included)."""
    target = _linear_wa_target(b, t, seed, fmt, bias, baseline)
    kw = dict(steps=steps, quadrature=rule, objective=objective, baseline="quantized", chunk_size=chunk,
              reference=reference, warmup_searches=0)  # fmt: skip
    fast = QIGProvider(QIGConfig(**kw))(target)  # type: ignore[arg-type]
    full = QIGProvider(QIGConfig(**kw, shortcuts=False))(target)  # type: ignore[arg-type]
    assert fast.diagnostics["shortcut_no_backward"] is True and "shortcut_no_backward" not in full.diagnostics
    assert fast.diagnostics["points_evaluated"] == full.diagnostics["points_evaluated"]
    torch.testing.assert_close(fast.raw, full.raw, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fast.weights, full.weights, rtol=1e-4, atol=1e-6)
    assert abs(fast.diagnostics["completeness_residual"] - full.diagnostics["completeness_residual"]) < 1e-3
