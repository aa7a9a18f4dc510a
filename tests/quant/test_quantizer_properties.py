"""Laws of the quantizer, checked by hypothesis on random tensors.

Each law fails if the corresponding line of maths is wrong (a wrong scale, an off-by-one
clamp, a zero point that is not rounded, a group reshape that mixes rows...).
"""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qigbench.quant import (
    Granularity,
    QuantSpec,
    compute_qparams,
    dequantize,
    dequantize_codes,
    fake_quantize,
    group_view,
    quantize,
    quantize_codes,
)

BITS = st.integers(min_value=2, max_value=8)
GROUPS = st.sampled_from([1, 2, 4, 8])


@st.composite
def matrices(draw: st.DrawFn, max_rows: int = 6, group: int | None = None) -> torch.Tensor:
    rows = draw(st.integers(1, max_rows))
    n_groups = draw(st.integers(1, 4))
    cols = n_groups * (group or draw(GROUPS))
    seed = draw(st.integers(0, 2**31 - 1))
    magnitude = draw(st.sampled_from([1e-3, 1.0, 50.0]))
    offset = draw(st.sampled_from([0.0, 0.0, 3.0, -7.0]))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, cols, generator=gen) * magnitude + offset * magnitude
    if draw(st.booleans()):  # a heavy outlier, as in real activations
        x[draw(st.integers(0, rows - 1)), draw(st.integers(0, cols - 1))] *= 100.0
    return x


@st.composite
def specs(draw: st.DrawFn, cols: int) -> QuantSpec:
    bits = draw(BITS)
    symmetric = draw(st.booleans())
    gran = draw(st.sampled_from([Granularity.PER_CHANNEL, Granularity.PER_GROUP, Granularity.PER_TENSOR]))
    if gran is Granularity.PER_GROUP:
        divisors = [d for d in range(1, cols + 1) if cols % d == 0]
        return QuantSpec(bits, symmetric, gran, draw(st.sampled_from(divisors)))
    return QuantSpec(bits, symmetric, gran)


def _broadcast_scale(x: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    scale, _ = compute_qparams(x, spec)
    return torch.broadcast_to(scale, group_view(x, spec).shape).reshape(x.shape)


def _tolerance(scale: torch.Tensor) -> torch.Tensor:
    # s/2 plus float32 rounding of x/s and of s*(q - z); the relative part is far below 1/2^b
    return scale * (0.5 + 2e-3) + 1e-30


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_error_at_most_half_a_step(data: st.DataObject) -> None:
    x = data.draw(matrices())
    spec = data.draw(specs(x.shape[1]))
    err = (x - fake_quantize(x, spec)).abs()
    assert bool((err <= _tolerance(_broadcast_scale(x, spec))).all())


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_codes_stay_in_range(data: st.DataObject) -> None:
    x = data.draw(matrices())
    spec = data.draw(specs(x.shape[1]))
    q = quantize(x, spec)
    lo, hi = (-(2 ** (spec.bits - 1)), 2 ** (spec.bits - 1) - 1) if spec.symmetric else (0, 2**spec.bits - 1)
    assert q.codes.dtype == torch.int32
    assert int(q.codes.min()) >= lo and int(q.codes.max()) <= hi


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_requantizing_dequantized_values_returns_the_same_codes(data: st.DataObject) -> None:
    x = data.draw(matrices())
    spec = data.draw(specs(x.shape[1]))
    q = quantize(x, spec)
    again = quantize_codes(group_view(dequantize(q), spec), q.scale, q.zero, spec)
    assert torch.equal(again, q.codes)
    # and fake quantization agrees with the integer path exactly
    assert torch.equal(fake_quantize(x, spec), dequantize(q))


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_symmetric_grid_represents_zero_exactly(data: st.DataObject) -> None:
    x = data.draw(matrices())
    spec = QuantSpec(data.draw(BITS), True, Granularity.PER_CHANNEL)
    x[:, 0] = 0.0
    assert bool((fake_quantize(x, spec)[:, 0] == 0).all())


@settings(max_examples=150, deadline=None)
@given(x=matrices(group=8), bits=BITS)
def test_asymmetric_groups_reproduce_their_min_and_max(x: torch.Tensor, bits: int) -> None:
    spec = QuantSpec(bits, False, Granularity.PER_GROUP, 8)
    g, dq = group_view(x, spec), group_view(fake_quantize(x, spec), spec)
    scale, _ = compute_qparams(x, spec)
    tol = _tolerance(scale.squeeze(-1))
    lo_idx, hi_idx = g.argmin(-1, keepdim=True), g.argmax(-1, keepdim=True)
    assert bool(((g.gather(-1, lo_idx) - dq.gather(-1, lo_idx)).abs().squeeze(-1) <= tol).all())
    assert bool(((g.gather(-1, hi_idx) - dq.gather(-1, hi_idx)).abs().squeeze(-1) <= tol).all())


@settings(max_examples=100, deadline=None)
@given(
    value=st.floats(-1e4, 1e4, allow_nan=False, allow_subnormal=False, width=32),
    bits=BITS,
    symmetric=st.booleans(),
)
def test_constant_groups_do_not_divide_by_zero(value: float, bits: int, symmetric: bool) -> None:
    x = torch.full((3, 16), value)
    spec = QuantSpec(bits, symmetric, Granularity.PER_GROUP, 8)
    scale, zero = compute_qparams(x, spec)
    assert bool(torch.isfinite(scale).all()) and bool((scale > 0).all())
    if zero is not None:
        assert bool(torch.isfinite(zero).all())
    out = fake_quantize(x, spec)
    assert bool(torch.isfinite(out).all())
    assert bool(((out - x).abs() <= _tolerance(scale.max())).all())


@settings(max_examples=100, deadline=None)
@given(
    b=st.integers(1, 3),
    t=st.integers(1, 5),
    h=st.sampled_from([4, 8, 12]),
    bits=BITS,
    seed=st.integers(0, 10_000),
)
def test_per_token_quantization_is_token_local(b: int, t: int, h: int, bits: int, seed: int) -> None:
    x = torch.randn(b, t, h, generator=torch.Generator().manual_seed(seed)) * 3
    spec = QuantSpec(bits, True, Granularity.PER_TOKEN)
    whole = fake_quantize(x, spec)
    for i in range(b):
        for j in range(t):
            assert torch.equal(whole[i, j], fake_quantize(x[i, j], spec))


@settings(max_examples=100, deadline=None)
@given(x=matrices(), bits=BITS, symmetric=st.booleans())
def test_group_covering_the_row_equals_per_channel(x: torch.Tensor, bits: int, symmetric: bool) -> None:
    per_group = QuantSpec(bits, symmetric, Granularity.PER_GROUP, x.shape[1])
    per_channel = QuantSpec(bits, symmetric, Granularity.PER_CHANNEL)
    assert torch.equal(fake_quantize(x, per_group), fake_quantize(x, per_channel))


@settings(max_examples=60, deadline=None)
@given(x=matrices(group=4), bits=BITS, symmetric=st.booleans())
def test_groups_are_independent_rows_and_spans(x: torch.Tensor, bits: int, symmetric: bool) -> None:
    """Quantizing one group alone gives the same values as quantizing it inside the tensor."""
    spec = QuantSpec(bits, symmetric, Granularity.PER_GROUP, 4)
    whole = fake_quantize(x, spec)
    for r in range(x.shape[0]):
        for c in range(0, x.shape[1], 4):
            alone = fake_quantize(x[r : r + 1, c : c + 4].clone(), spec)
            assert torch.equal(whole[r : r + 1, c : c + 4], alone)


def test_dequantize_codes_inverts_the_affine_map() -> None:
    scale = torch.tensor([[0.5]])
    zero = torch.tensor([[3.0]])
    codes = torch.arange(8, dtype=torch.int32).reshape(1, 8)
    assert torch.equal(dequantize_codes(codes, scale, zero), (torch.arange(8.0) - 3.0).reshape(1, 8) * 0.5)
