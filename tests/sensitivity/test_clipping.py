"""Clipping laws: Tukey fences, top-5 zero, top-5 mean (paper eq. 4 and Table A1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qigbench.sensitivity import SensitivityError, apply_clipping, iqr_clip, iqr_fences, top5_mean, top5_zero


@st.composite
def scores_and_mask(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    b = draw(st.integers(1, 4))
    t = draw(st.integers(1, 24))
    vals = draw(
        st.lists(st.floats(0, 1e3, allow_nan=False, allow_subnormal=False, width=32), min_size=b * t, max_size=b * t)
    )
    # heavy tails: a few huge values
    s = torch.tensor(vals, dtype=torch.float32).view(b, t) ** 2 / 1e3
    mask = torch.tensor(draw(st.lists(st.booleans(), min_size=b * t, max_size=b * t))).view(b, t)
    return s, mask


@settings(max_examples=60, deadline=None)
@given(sm=scores_and_mask())
def test_iqr_clip_keeps_values_inside_fences_and_clamps_outside_to_them(sm: tuple[torch.Tensor, torch.Tensor]) -> None:
    s, mask = sm
    lo, hi = iqr_fences(s, mask)
    out = iqr_clip(s, mask)
    inside = (s >= lo) & (s <= hi)
    assert torch.equal(out[inside | ~mask], s[inside | ~mask])  # bit-identical inside, and padding untouched
    above, below = mask & (s > hi), mask & (s < lo)
    assert torch.equal(out[above], hi.expand_as(s)[above])
    assert torch.equal(out[below], lo.expand_as(s)[below])


@settings(max_examples=40, deadline=None)
@given(sm=scores_and_mask())
def test_iqr_fences_are_tukey_fences_of_the_masked_row(sm: tuple[torch.Tensor, torch.Tensor]) -> None:
    s, mask = sm
    lo, hi = iqr_fences(s, mask)
    for i in range(s.shape[0]):
        row = s[i][mask[i]].double().numpy()
        if row.size == 0:
            assert lo[i].item() == -float("inf") and hi[i].item() == float("inf")
            continue
        q1, q3 = np.percentile(row, [25, 75])
        np.testing.assert_allclose(
            [lo[i].item(), hi[i].item()], [q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)], rtol=1e-4
        )


def test_iqr_clip_tames_an_outlier() -> None:
    s = torch.tensor([[1.0, 2.0, 3.0, 4.0, 100.0]])
    mask = torch.ones_like(s, dtype=torch.bool)
    # Q1 = 2, Q3 = 4, IQR = 2 -> upper fence 7
    assert torch.equal(iqr_clip(s, mask), torch.tensor([[1.0, 2.0, 3.0, 4.0, 7.0]]))


@settings(max_examples=40, deadline=None)
@given(sm=scores_and_mask())
def test_top5_zero_zeroes_exactly_the_five_largest(sm: tuple[torch.Tensor, torch.Tensor]) -> None:
    s, mask = sm
    s = s + torch.arange(s.numel()).view_as(s) * 1e-3  # break ties so "the five largest" is well defined
    out = top5_zero(s, mask)
    for i in range(s.shape[0]):
        valid = mask[i].nonzero().flatten()
        order = valid[s[i, valid].argsort(descending=True)]
        top, rest = order[:5], order[5:]
        assert (out[i, top] == 0).all()
        assert torch.equal(out[i, rest], s[i, rest])
        assert torch.equal(out[i, ~mask[i]], s[i, ~mask[i]])


@settings(max_examples=40, deadline=None)
@given(sm=scores_and_mask())
def test_top5_mean_replaces_the_five_largest_with_the_row_mean(sm: tuple[torch.Tensor, torch.Tensor]) -> None:
    s, mask = sm
    s = s + torch.arange(s.numel()).view_as(s) * 1e-3
    out = top5_mean(s, mask)
    for i in range(s.shape[0]):
        valid = mask[i].nonzero().flatten()
        if valid.numel() == 0:
            assert torch.equal(out[i], s[i])
            continue
        mean = s[i, valid].mean()
        order = valid[s[i, valid].argsort(descending=True)]
        torch.testing.assert_close(out[i, order[:5]], mean.expand(min(5, valid.numel())))
        assert torch.equal(out[i, order[5:]], s[i, order[5:]])


def test_none_is_identity_and_unknown_names_are_refused() -> None:
    s = torch.rand(2, 6)
    mask = torch.ones_like(s, dtype=torch.bool)
    assert apply_clipping("none", s, mask) is s
    with pytest.raises(SensitivityError, match="top5-mean"):
        apply_clipping("top3", s, mask)
