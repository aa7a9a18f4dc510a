"""Hand-computed cases: the numbers in each test were worked out on paper from Appendix B."""

from __future__ import annotations

import torch

from qigbench.quant import Granularity, QuantSpec, dequantize, fake_quantize, quantize


def test_asymmetric_2bit_exact_grid() -> None:
    x = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    q = quantize(x, QuantSpec(2, False, Granularity.PER_CHANNEL))
    assert q.codes.flatten().tolist() == [0, 1, 2, 3]
    assert q.scale.item() == 1.0 and q.zero is not None and q.zero.item() == 0.0
    assert torch.equal(dequantize(q), x)


def test_asymmetric_3bit_with_negative_min() -> None:
    # min -1, max 2.5: s = 3.5 / 7 = 0.5, z = round(1 / 0.5) = 2
    x = torch.tensor([[-1.0, 0.2, 0.4, 2.5]])
    q = quantize(x, QuantSpec(3, False, Granularity.PER_CHANNEL))
    assert q.scale.item() == 0.5 and q.zero is not None and q.zero.item() == 2.0
    # round(x / s) + z = round([-2, .4, .8, 5]) + 2
    assert q.codes.flatten().tolist() == [0, 2, 3, 7]
    assert dequantize(q).flatten().tolist() == [-1.0, 0.0, 0.5, 2.5]


def test_symmetric_4bit_rounds_half_to_even() -> None:
    # absmax 1.75, qmax 7: s = 0.25; x / s = [3, -7, 0.5, 2]
    x = torch.tensor([[0.75, -1.75, 0.125, 0.5]])
    q = quantize(x, QuantSpec(4, True, Granularity.PER_CHANNEL))
    assert q.scale.item() == 0.25 and q.zero is None
    assert q.codes.flatten().tolist() == [3, -7, 0, 2]
    assert dequantize(q).flatten().tolist() == [0.75, -1.75, 0.0, 0.5]


def test_groups_get_their_own_scales() -> None:
    x = torch.tensor([[0.0, 3.0, 0.0, 30.0]])
    q = quantize(x, QuantSpec(2, False, Granularity.PER_GROUP, 2))
    assert q.scale.flatten().tolist() == [1.0, 10.0]
    assert torch.equal(dequantize(q), x)


def test_per_token_8bit_activation() -> None:
    # token 0: absmax 127 -> s = 1, -63.5 rounds to -64 (half to even)
    x = torch.tensor([[[127.0, -63.5], [2.0, 1.0]]])
    out = fake_quantize(x, QuantSpec(8, True, Granularity.PER_TOKEN))
    assert out[0, 0].tolist() == [127.0, -64.0]
    s = 2.0 / 127
    assert torch.allclose(out[0, 1], torch.tensor([2.0, round(1.0 / s) * s]))


def test_per_tensor_uses_one_scale() -> None:
    x = torch.tensor([[1.0, -2.0], [4.0, 0.5]])
    q = quantize(x, QuantSpec(3, True, Granularity.PER_TENSOR))
    assert q.scale.numel() == 1 and q.scale.item() == torch.tensor(4.0 / 3).item()
    assert q.codes.flatten().tolist() == [1, -2, 3, 0]


def test_bfloat16_input_keeps_dtype() -> None:
    x = torch.randn(4, 8).to(torch.bfloat16)
    out = fake_quantize(x, QuantSpec(4, False, Granularity.PER_GROUP, 8))
    assert out.dtype == torch.bfloat16 and out.shape == x.shape
