"""Q-VLM's quantizers obey the laws of the existing ones: the per-input-channel static quantizer
reconstructs every in-range value within half a step and keeps its codes on the grid; a dead
channel stays finite and is reported; NF4 lands on its 16 levels within half a gap."""

from __future__ import annotations

import itertools
import logging

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qigbench.quant import ChannelActQuantLinear, quantize_codes
from qigbench.quant.nf4 import NF4_LEVELS, nf4_fake_quantize, nf4_quantize
from qigbench.quant.static import (
    channel_range,
    channel_spec,
    fake_quantize_channel_dynamic,
    fake_quantize_static,
    static_qparams,
    update_range,
)


@settings(max_examples=40, deadline=None)
@given(bits=st.integers(2, 8), seed=st.integers(0, 2**16), channels=st.integers(1, 9), spread=st.floats(0.01, 100.0))
def test_static_error_is_at_most_half_a_step_in_range(bits: int, seed: int, channels: int, spread: float) -> None:
    g = torch.Generator().manual_seed(seed)
    calib = torch.randn(2, 7, channels, generator=g) * spread
    lo, hi = channel_range(calib)
    assert bool((lo <= 0).all() and (hi >= 0).all())  # the release's ranges start at 0
    x = lo + (hi - lo) * torch.rand(3, 5, channels, generator=g)  # inside the range
    scale, zero = static_qparams(lo, hi, bits)
    err = (fake_quantize_static(x, lo, hi, bits) - x).abs()
    assert bool((err <= scale / 2 * (1 + 1e-5) + 1e-7).all())
    codes = quantize_codes(x, scale, zero, channel_spec(bits))
    assert int(codes.min()) >= 0 and int(codes.max()) <= 2**bits - 1


def test_static_range_clips_outside_values_and_clip_ratio_shrinks() -> None:
    x = torch.tensor([[[-1.0, 0.5], [2.0, 4.0]]])
    lo, hi = channel_range(x)
    out = fake_quantize_static(torch.tensor([[[10.0, -10.0]]]), lo, hi, 4)
    assert out[0, 0, 0] == pytest.approx(float(hi[0]), abs=float(static_qparams(lo, hi, 4)[0][0]))
    assert out[0, 0, 1] >= float(lo[1]) - 1e-6
    clipped = fake_quantize_static(x, lo, hi, 4, clip_ratio=0.5)
    assert float(clipped.abs().max()) <= 0.5 * float(hi.max()) + 1e-5


def test_running_range_is_min_max_over_calls_and_ignores_masked_tokens() -> None:
    a = torch.tensor([[[1.0, -2.0], [100.0, 100.0]]])
    mask = torch.tensor([[True, False]])
    lo, hi = channel_range(a, mask)
    assert lo.tolist() == [0.0, -2.0] and hi.tolist() == [1.0, 0.0]
    lo, hi = update_range(lo, hi, torch.tensor([[[-3.0, 5.0]]]))
    assert lo.tolist() == [-3.0, -2.0] and hi.tolist() == [1.0, 5.0]


def test_dead_channel_is_finite_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    calib = torch.randn(1, 6, 4)
    calib[..., 2] = 0.0
    lo, hi = channel_range(calib)
    with caplog.at_level(logging.WARNING):
        layer = ChannelActQuantLinear(torch.randn(3, 4), None, "W4A4", 4, (lo, hi), name="probe")
    assert "1 of 4 input channels" in caplog.text
    x = torch.randn(2, 5, 4) * 10  # values the dead channel never saw
    out = layer(x)
    assert bool(torch.isfinite(out).all())
    assert bool(torch.isfinite(fake_quantize_channel_dynamic(torch.zeros(1, 3, 4), 4)).all())


def test_dynamic_channel_quantizer_uses_this_calls_range() -> None:
    x = torch.randn(2, 9, 5)
    lo, hi = channel_range(x)
    assert torch.equal(fake_quantize_channel_dynamic(x, 4), fake_quantize_static(x, lo, hi, 4))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), rows=st.integers(1, 4))
def test_nf4_codes_and_error_bound(seed: int, rows: int) -> None:
    w = torch.randn(rows, 128, generator=torch.Generator().manual_seed(seed))
    codes, absmax = nf4_quantize(w)
    assert int(codes.min()) >= 0 and int(codes.max()) <= 15
    half_gap = max(b - a for a, b in itertools.pairwise(NF4_LEVELS)) / 2
    err = (nf4_fake_quantize(w).reshape(-1, 64) - w.reshape(-1, 64)).abs()
    assert bool((err <= half_gap * absmax + 1e-6).all())
    levels = torch.tensor(NF4_LEVELS)
    exact = levels.repeat(8).reshape(2, 64) * 3.0  # on the grid already: reproduced exactly
    assert torch.allclose(nf4_fake_quantize(exact), exact, atol=1e-6)


def test_nf4_refuses_a_size_not_divisible_by_the_block() -> None:
    from qigbench.errors import FormatError

    with pytest.raises(FormatError, match="weights=format"):
        nf4_fake_quantize(torch.randn(3, 10))
