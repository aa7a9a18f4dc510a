"""The agreement metrics behind the fast variant's table (qigbench.sensitivity.agreement) and the
massive-activation case of the QIG variant study (qigbench.studies.qig_variants)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qigbench.quant import parse_format
from qigbench.sensitivity.agreement import agreement, average_ranks, combine, spearman
from qigbench.sensitivity.qig_provider import QIGConfig, QIGProvider
from qigbench.studies.qig_variants import Variant, massive_attention, massive_study
from qigbench.tokens import TokenType


def _scipy_like_ranks(v: list[float]) -> list[float]:
    order = sorted(range(len(v)), key=lambda i: v[i])
    ranks = [0.0] * len(v)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2
        i = j + 1
    return ranks


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=30))
def test_average_ranks_share_ties(values: list[int]) -> None:
    got = average_ranks(torch.tensor(values, dtype=torch.float32)).tolist()
    assert got == pytest.approx(_scipy_like_ranks([float(v) for v in values]))


def test_spearman_is_one_for_monotone_maps_and_minus_one_for_reversals() -> None:
    a = torch.rand(50)
    assert spearman(a, a.exp()) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(torch.ones(5), torch.ones(5)) == 1.0 and spearman(torch.ones(5), torch.arange(5.0)) == 0.0


def test_agreement_ignores_padding_and_reports_the_worst_sample() -> None:
    types = torch.full((2, 6), int(TokenType.TEXT))
    types[1, 4:] = TokenType.PAD
    ref = torch.tensor([[1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 0, 0]], dtype=torch.float32) / 21
    other = ref.clone()
    other[1, :2] = other[1, [1, 0]]  # swap two tokens of sample 1
    found = agreement(ref, other, types)
    assert found.spearman[0] == pytest.approx(1.0) and found.spearman_min == pytest.approx(0.8)
    assert found.max_abs_diff == pytest.approx(float((ref - other).abs().max()))
    both = combine([found, agreement(ref, ref, types)])
    assert len(both.spearman) == 4 and both.spearman_min == found.spearman_min
    assert not found.meets() and agreement(ref, ref, types).meets()


def test_massive_activation_case_has_one_token_at_eight_times_the_norm() -> None:
    target, _ = massive_attention(parse_format("W3A16g32"), seed=0, batch=2, tokens=16, hidden=32, heads=2)
    norms = target.x.norm(dim=-1)
    assert (norms[:, 0] / norms[:, 1:].mean(dim=1)).min() > 6  # ~8x (random norms vary a little)
    assert target.x_q is None  # zero baseline in the weight-only format
    wa, _ = massive_attention(parse_format("W4A8"), seed=0, batch=2, tokens=16, hidden=32, heads=2)
    assert wa.x_q is not None and wa.weight_activation


def test_one_point_misranks_the_massive_case_while_the_fast_variant_agrees() -> None:
    """Why the default is m = 32 and the fast variant is Gauss-Legendre with 8 nodes, not one point."""
    fmt = parse_format("W3A16")
    rows = massive_study(fmt, [Variant.parse("steps=1"), Variant.parse("steps=8,quadrature=gauss")], seeds=[0])
    (row,) = rows
    assert row.agreement["qig[steps=1]"].spearman_min < 0.9
    fast = row.agreement["qig[steps=8,quadrature=gauss]"]
    assert fast.spearman_min >= 0.99 and fast.max_abs_diff <= 1e-3
    assert set(row.block_error) == {"qig", "qig[steps=1]", "qig[steps=8,quadrature=gauss]"}


def test_variant_options_and_labels() -> None:
    v = Variant.parse("qig.steps=8, quadrature=gauss")
    assert v.options == (("steps", "8"), ("quadrature", "gauss"))
    assert v.method_options == (("qig.steps", "8"), ("qig.quadrature", "gauss"))
    assert v.label == "qig[steps=8,quadrature=gauss]"
    assert v.config(QIGConfig(clipping="none")).clipping == "none" and v.config().steps == 8
    assert QIGProvider(v.config()).config.quadrature == "gauss"
    with pytest.raises(ValueError, match="KEY=VALUE"):
        Variant.parse("steps")


def test_fast_preset_is_gauss_8_in_weight_only_formats_and_the_paper_in_weight_activation_ones() -> None:
    from sens_blocks import make_target

    from qigbench.engine.method import get_method

    fast = QIGConfig(preset="fast")
    assert fast.integration(False) == (8, "gauss") and fast.integration(True) == (32, "midpoint")
    assert get_method("qig", {"qig.preset": "fast"}).label() == "qig[preset=fast]"
    assert get_method("qig-gptq", {"qig.preset": "fast"}).label() == "qig+gptq[preset=fast]"
    only = make_target(b=2, t=6, seed=4)
    torch.testing.assert_close(QIGProvider(fast)(only).weights,
                               QIGProvider(QIGConfig(steps=8, quadrature="gauss"))(only).weights)  # fmt: skip
    wa = make_target(b=2, t=6, seed=4, fmt="W4A8")
    assert torch.equal(QIGProvider(fast)(wa).weights, QIGProvider(QIGConfig())(wa).weights)


def test_fast_preset_falls_back_to_the_paper_where_a_sample_is_flat() -> None:
    """Where some sample's token scores are flat the fast preset integrates again with the paper's
    rule, so that group's weights are the paper's exactly; elsewhere it keeps its 8 nodes."""
    from dataclasses import replace

    from sens_blocks import make_target

    from qigbench.sensitivity.qig_provider import FAST_FLAT_CV, flattest_sample

    fast, paper = QIGConfig(preset="fast"), QIGConfig()
    spread = make_target(b=2, t=6, seed=4)
    kept = QIGProvider(fast)(spread)
    assert kept.diagnostics["fast_flattest_cv"] >= FAST_FLAT_CV and "fast_fallback" not in kept.diagnostics
    # every token of sample 1 the same vector: its scores are equal (CV 0), the group falls back
    x = spread.x.clone()
    x[1] = x[1, :1].expand_as(x[1])
    flat = replace(spread, x=x)
    got = QIGProvider(fast)(flat)
    assert got.diagnostics["fast_fallback"] and got.diagnostics["fast_flattest_cv"] < 1e-6
    assert got.diagnostics["fast_points_evaluated"] == 8 and got.diagnostics["steps_used"] == 32
    assert torch.equal(got.weights, QIGProvider(paper)(flat).weights)
    # the coefficient of variation skips padding and samples without two real tokens
    types = torch.tensor([[1, 1, 0], [1, 1, 1]])  # 0: padding
    assert flattest_sample(torch.tensor([[1.0, 1.0, 9.0], [2.0, 4.0, 0.0]]), types) == 0.0  # the 9 is padding
    assert abs(flattest_sample(torch.tensor([[1.0, 3.0, 9.0], [2.0, 4.0, 0.0]]), types) - 0.5) < 1e-6
    assert flattest_sample(torch.tensor([[1.0, 3.0, 9.0]]), torch.tensor([[1, 0, 0]])) == float("inf")


def test_fast_fallback_is_decided_on_the_whole_calibration_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """Data-parallel, each rank holds some samples: the flatness is reduced over the ranks, so a flat
    sample on another rank makes this rank fall back too (as one process holding every sample would)."""
    from sens_blocks import make_target

    from qigbench import parallel
    from qigbench.sensitivity import qig_provider

    spread = make_target(b=2, t=6, seed=4)
    assert "fast_fallback" not in QIGProvider(QIGConfig(preset="fast"))(spread).diagnostics
    monkeypatch.setattr(qig_provider.parallel, "all_reduce_min", lambda t: torch.zeros_like(t))  # another rank: CV 0
    assert parallel.all_reduce_min is qig_provider.parallel.all_reduce_min
    got = QIGProvider(QIGConfig(preset="fast"))(spread)
    assert got.diagnostics["fast_fallback"] and got.diagnostics["fast_flattest_cv"] == 0.0
    assert torch.equal(got.weights, QIGProvider(QIGConfig())(spread).weights)
