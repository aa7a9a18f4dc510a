"""Laws of code recovery: the integer codes, scales and zero points read back from a fake-quantized
weight dequantize to it bit for bit, whatever chose the scales (RTN, clipping, GPTQ-style updates)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from qigbench.quant import Granularity, QuantSpec, compute_qparams, dequantize, fake_quantize, fake_quantize_with
from qigbench.quant.codes import ExportError, recover_codes
from qigbench.quant.quantizer import group_view


@st.composite
def weights_and_specs(draw: st.DrawFn) -> tuple[torch.Tensor, QuantSpec]:
    bits = draw(st.integers(2, 8))
    symmetric = draw(st.booleans())
    group = draw(st.sampled_from([None, 8, 16, 32, 64, 128]))
    n_groups = draw(st.integers(1, 3))
    cols = n_groups * (group or 32)
    rows = draw(st.integers(1, 8))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    scale = draw(st.sampled_from([1e-3, 0.05, 1.0, 30.0]))
    w = torch.randn(rows, cols, generator=gen) * scale
    if draw(st.booleans()):  # outlier
        w[draw(st.integers(0, rows - 1)), draw(st.integers(0, cols - 1))] *= 50.0
    gran = Granularity.PER_GROUP if group else Granularity.PER_CHANNEL
    return w, QuantSpec(bits, symmetric, gran, group)


def _straddles_zero(w: torch.Tensor, spec: QuantSpec) -> bool:
    """Every group has values on both sides of zero (or at it): then a b-bit zero point exists."""
    g = group_view(w.float(), spec)
    return spec.symmetric or bool(((g.amin(-1) <= 0) & (g.amax(-1) >= 0)).all())


def _check(w_hat: torch.Tensor, spec: QuantSpec) -> None:
    qt = recover_codes(w_hat, spec)
    assert torch.equal(dequantize(qt), w_hat)  # bit for bit, not allclose
    assert int(qt.codes.min()) >= spec.qmin and int(qt.codes.max()) <= spec.qmax
    if spec.symmetric:
        assert qt.zero is None
    else:
        assert qt.zero is not None and float(qt.zero.min()) >= 0 and float(qt.zero.max()) <= spec.qmax


@settings(max_examples=150, deadline=None)
@given(weights_and_specs(), st.sampled_from([1.0, 0.95, 0.8, 0.5]))
def test_rtn_and_clipped_weights_round_trip_exactly(case: tuple[torch.Tensor, QuantSpec], clip: float) -> None:
    w, spec = case
    assume(_straddles_zero(w, spec))  # one-sided groups: see test_one_sided_group_raises...
    _check(fake_quantize(w, spec, clip_ratio=clip), spec)


@settings(max_examples=100, deadline=None)
@given(weights_and_specs(), st.integers(0, 2**31 - 1))
def test_solver_chosen_scales_round_trip_exactly(case: tuple[torch.Tensor, QuantSpec], seed: int) -> None:
    """GPTQ quantizes updated weights with parameters it chose: codes need not use the full range."""
    w, spec = case
    assume(_straddles_zero(w, spec))
    scale, zero = compute_qparams(w, spec)
    gen = torch.Generator().manual_seed(seed)
    scale = scale * (1 + torch.rand(scale.shape, generator=gen))  # a coarser grid than the range needs
    updated = group_view(w, spec) + 0.1 * torch.randn(group_view(w, spec).shape, generator=gen) * scale
    w_hat = fake_quantize_with(updated, scale, zero, spec).reshape(w.shape)
    _check(w_hat, spec)


def test_constant_and_zero_groups() -> None:
    spec = QuantSpec(4, False, Granularity.PER_GROUP, 4)
    w = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.3, 0.3, 0.3, 0.3], [-2.5, -2.5, -2.5, -2.5, 1.0, -1.0, 0.5, 0.0]])
    _check(fake_quantize(w, spec), spec)


def test_one_sided_group_raises_instead_of_changing_weights() -> None:
    """Our zero point is unclamped: a group of only positive values has z < 0, which b bits cannot store."""
    spec = QuantSpec(4, False, Granularity.PER_GROUP, 8)
    w = torch.linspace(1.0, 2.0, 8).reshape(1, 8)
    w_hat = fake_quantize(w, spec)
    with pytest.raises(ExportError, match=r"one side of zero.*fake-quant"):
        recover_codes(w_hat, spec, name="layer.q_proj")


def test_off_grid_weight_is_refused() -> None:
    spec = QuantSpec(3, True, Granularity.PER_CHANNEL)
    with pytest.raises(ExportError, match="not on a 3-bit grid"):
        recover_codes(torch.randn(4, 64), spec)


@settings(max_examples=40, deadline=None)
@given(weights_and_specs())
def test_bfloat16_weights_round_trip_exactly(case: tuple[torch.Tensor, QuantSpec]) -> None:
    """CUDA runs calibrate in bfloat16: the grid value is rounded to bf16 after s * k; still recoverable."""
    w, spec = case
    assume(_straddles_zero(w, spec))
    # bfloat16 keeps 8 significant bits: with 7-8-bit codes, k * s rounds so coarsely that distinct
    # grids explain the same values and the search may not find one; export then refuses (ExportError)
    assume(spec.bits <= 6)
    _check(fake_quantize(w.bfloat16(), spec), spec)
