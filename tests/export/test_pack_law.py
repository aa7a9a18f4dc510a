"""Pack-then-unpack through compressed-tensors' own compressor reproduces the fake-quant weight bit
for bit, for every bit width 2..8, grid and group size."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qigbench.export.compressed import pack_weight, unpack_weight
from qigbench.quant import fake_quantize, parse_format

FORMATS = [f"W{b}A16{g}{grid}" for b in range(2, 9) for g in ("", "g32", "g64", "gc") for grid in ("", "-sym")]
FORMATS += ["W8A8", "W4A8", "W4A8g64", "W3A8"]


@settings(max_examples=120, deadline=None)
@given(st.sampled_from(FORMATS), st.integers(2, 6), st.integers(1, 3), st.integers(0, 2**31 - 1))
def test_pack_unpack_is_bit_exact(name: str, rows: int, n_groups: int, seed: int) -> None:
    # rows * 8 >= 16: compressed-tensors 0.20 cannot unpack a 4-bit zero point packed into a single
    # int32 row (a [1, G] tensor's transpose is "contiguous" yet strided); no real layer has 8 outputs
    fmt = parse_format(name)
    cols = 128 * n_groups
    w = torch.randn(rows * 8, cols, generator=torch.Generator().manual_seed(seed)) * 0.05
    w_hat = fake_quantize(w, fmt.weight)
    state = pack_weight(w_hat, fmt)
    assert state["weight_packed"].dtype == torch.int32 and "weight" not in state
    # dense packing: b bits per code
    assert state["weight_packed"].numel() * 32 == w.numel() * fmt.w_bits
    assert ("weight_zero_point" in state) == (not fmt.weight.symmetric)
    assert torch.equal(unpack_weight(state, fmt), w_hat)
