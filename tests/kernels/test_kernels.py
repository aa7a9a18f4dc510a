"""The kernel modules compute what the fake-quant QuantLinear computes (up to float rounding of
the accumulation), and formats without a kernel say so."""

from __future__ import annotations

import pytest
import torch

from qigbench.kernels import Int4WeightOnlyLinear, Int8DynamicLinear, kernel_for, use_kernels_
from qigbench.quant import QuantLinear


def _pair(fmt: str, bias: bool, seed: int = 0) -> tuple[QuantLinear, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    linear = torch.nn.Linear(512, 96, bias=bias)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(96, 512, generator=gen) * 0.05)
        if bias:
            linear.bias.copy_(torch.randn(96, generator=gen))
    x = torch.randn(3, 7, 512, generator=gen)
    x[0, 0, 5] = 40.0  # an activation outlier
    return QuantLinear.from_linear(linear, fmt), x


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("fmt", ["W4A16g32", "W4A16g64", "W4A16", "W4A16g256", "W4A16-sym"])
@pytest.mark.parametrize("bias", [False, True])
def test_int4_matches_fake_quant(fmt: str, bias: bool) -> None:
    ref, x = _pair(fmt, bias)
    exact = Int4WeightOnlyLinear.from_quant_linear(ref, compute_dtype=torch.float32)
    assert exact.packed.dtype == torch.uint8 and exact.packed.numel() == ref.weight.numel() // 2
    assert _rel(exact(x), ref(x)) < 1e-5
    fast = Int4WeightOnlyLinear.from_quant_linear(ref)  # bfloat16 activations: bf16 rounding only
    assert _rel(fast(x), ref(x)) < 2e-2


@pytest.mark.parametrize("fmt", ["W8A8", "W4A8"])
@pytest.mark.parametrize("bias", [False, True])
def test_int8_matches_fake_quant(fmt: str, bias: bool) -> None:
    ref, x = _pair(fmt, bias)
    kernel = Int8DynamicLinear.from_quant_linear(ref)
    assert kernel.weight_int8.dtype == torch.int8
    assert _rel(kernel(x), ref(x)) < 1e-5


def test_a_wrong_zero_point_would_be_caught() -> None:
    """The law above is not vacuous: an off-by-one zero point moves the output by far more than 1e-5."""
    ref, x = _pair("W4A16", bias=False)
    kernel = Int4WeightOnlyLinear.from_quant_linear(ref, compute_dtype=torch.float32)
    kernel.scales_and_zeros[..., 1] += kernel.scales_and_zeros[..., 0]  # z - 1
    assert _rel(kernel(x), ref(x)) > 1e-3


@pytest.mark.parametrize("fmt", ["W3A16", "W2A16g64", "W4A16gc", "W4A16g16", "W4A8g128", "W4A4"])
def test_formats_without_a_kernel_say_why(fmt: str) -> None:
    kernel, why = kernel_for(fmt)
    assert kernel is None and why


def test_use_kernels_swaps_only_what_has_a_kernel() -> None:
    model = torch.nn.Sequential(
        _pair("W4A16", False)[0], torch.nn.ReLU(), QuantLinear.from_linear(torch.nn.Linear(96, 64), "W3A16g32")
    )
    done = use_kernels_(model)
    assert done["0"] == "int4-weight-only" and done["2"].startswith("no kernel")
    assert isinstance(model[0], Int4WeightOnlyLinear) and isinstance(model[2], QuantLinear)
