from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from qigbench.quant import QuantLinear, fake_quantize, parse_format, quantize_linears_


def _linear(seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(16, 8)


def test_weight_only_linear_uses_fake_quantized_weight_and_fp_input() -> None:
    lin = _linear()
    fmt = parse_format("W3A16g8")
    q = QuantLinear.from_linear(lin, fmt)
    x = torch.randn(2, 5, 16)
    expected = F.linear(x, fake_quantize(lin.weight.detach(), fmt.weight), lin.bias)
    assert torch.equal(q(x), expected)
    assert "W3A16g8" in repr(q)


def test_weight_activation_linear_quantizes_each_token() -> None:
    lin = _linear()
    fmt = parse_format("W4A8")
    assert fmt.activation is not None
    q = QuantLinear.from_linear(lin, fmt)
    x = torch.randn(2, 5, 16)
    expected = F.linear(fake_quantize(x, fmt.activation), fake_quantize(lin.weight.detach(), fmt.weight), lin.bias)
    assert torch.equal(q(x), expected)
    assert not torch.equal(q(x), F.linear(x, q.weight, q.bias))


def test_straight_through_lets_gradients_pass_the_activation_quantizer() -> None:
    q = QuantLinear.from_linear(_linear(), "W4A8", straight_through=True)
    x = torch.randn(3, 16, requires_grad=True)
    q(x).sum().backward()
    assert x.grad is not None
    assert torch.allclose(x.grad, q.weight.sum(0).expand(3, -1))


def test_quantize_linears_replaces_in_place() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 4)))
    names = quantize_linears_(model, "W4A16g8", include=lambda name, lin: name != "0")
    assert names == ["2.0"]
    assert isinstance(model[2][0], QuantLinear) and isinstance(model[0], nn.Linear)
