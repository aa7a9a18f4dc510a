"""Leave-one-out's token-wise shortcut (issue 19): on a compared module that maps each token on its
own, replacing token t changes only the objective's term t, so two forwards per sample give every
token's score. It must equal the per-token loop it replaces, and it must be taken only where the
target says its modules are token-wise (a module that mixes tokens gives other scores)."""

from __future__ import annotations

import dataclasses

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sens_blocks import WEIGHT_ACT, WEIGHT_ONLY, make_target
from torch import nn

from qigbench.sensitivity import AttributionTarget
from qigbench.sensitivity.leave_one_out import LeaveOneOutConfig, LeaveOneOutProvider
from qigbench.sensitivity.qig_provider import QIGConfig, qig_objective

LOOP = LeaveOneOutProvider(LeaveOneOutConfig(token_wise=False, chunk_size=3))
SHORTCUT = LeaveOneOutProvider()


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 3),
    t=st.integers(2, 12),
    h=st.sampled_from([8, 16]),
    seed=st.integers(0, 10_000),
    fmt=st.sampled_from([WEIGHT_ONLY, WEIGHT_ACT]),
    pad=st.integers(0, 1),
)
def test_the_token_wise_shortcut_equals_the_per_token_loop(
    b: int, t: int, h: int, seed: int, fmt: str, pad: int
) -> None:
    """The loop subtracts two float32 sums over T tokens (its scores are cast to float32); the
    shortcut subtracts two terms. They differ by that cancellation only: ~T float32 roundings."""
    target = make_target(b=b, t=t, h=h, seed=seed, fmt=fmt, n_pad=[pad] + [0] * (b - 1), dtype=torch.float64)
    target = dataclasses.replace(target, token_wise=True)
    fast, slow = SHORTCUT(target), LOOP(target)
    assert fast.diagnostics["shortcut_token_wise"] and not slow.diagnostics["shortcut_token_wise"]
    assert (fast.diagnostics["forwards_per_sample"], slow.diagnostics["forwards_per_sample"]) == (2, t + 1)
    with torch.no_grad():  # the size of the sums the loop subtracts, which its rounding is relative to
        sums = float(qig_objective(target, QIGConfig())(target.x).abs().max())
    torch.testing.assert_close(fast.raw, slow.raw, rtol=1e-5, atol=1e-6 * sums)
    unit = fast.raw.sum(dim=1, keepdim=True).clamp_min(1e-300)  # weights are raw / row sum
    torch.testing.assert_close(fast.weights, slow.weights, rtol=1e-4, atol=float((1e-6 * sums / unit).max()))
    assert fast.diagnostics.get("fallback_rows") == slow.diagnostics.get("fallback_rows")


class _Counting(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(x)


def test_the_shortcut_runs_two_forwards_a_span_and_the_loop_one_per_chunk_of_tokens() -> None:
    base = make_target(b=2, t=9, fmt=WEIGHT_ACT)
    f, fq = _Counting(base.f_fp), _Counting(base.f_q)
    target = dataclasses.replace(base, f_fp=f, f_q=fq, token_wise=True)
    SHORTCUT(target)
    assert (f.calls, fq.calls) == (2, 2)
    f.calls = fq.calls = 0
    LOOP(target)
    assert (f.calls, fq.calls) == (1 + 3, 1 + 3)  # G(x), then 9 tokens in chunks of 3


class _CausalMean(nn.Module):
    """Each output token is the mean of the tokens up to it, through a linear: tokens mix."""

    def __init__(self, linear: nn.Module) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = torch.arange(1, x.shape[1] + 1, dtype=x.dtype).view(1, -1, 1)
        return self.linear(x.cumsum(dim=1) / steps)


def test_on_a_module_that_mixes_tokens_only_the_loop_is_right_so_the_flag_decides() -> None:
    base = make_target(b=2, t=8, fmt=WEIGHT_ACT)
    assert isinstance(base.f_fp, nn.Sequential) and isinstance(base.f_q, nn.Sequential)
    mixing = AttributionTarget(f_fp=_CausalMean(base.f_fp), f_q=_CausalMean(base.f_q), x=base.x, x_q=base.x_q,
                               token_types=base.token_types)  # fmt: skip
    assert not mixing.token_wise  # the default: never assumed
    honest = SHORTCUT(mixing)
    assert not honest.diagnostics["shortcut_token_wise"]
    torch.testing.assert_close(honest.raw, LOOP(mixing).raw)
    wrongly_flagged = SHORTCUT(dataclasses.replace(mixing, token_wise=True))
    assert not torch.allclose(wrongly_flagged.raw, honest.raw, rtol=1e-2, atol=0.0)
