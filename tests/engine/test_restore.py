"""restore_block_: saved quantized blocks come back as QuantLinears with bit-identical weights."""

from __future__ import annotations

import torch
from torch import nn

from qigbench.engine.restore import quantized_linear_names, restore_block_
from qigbench.quant import QuantLinear, parse_format, set_submodule


def _block() -> nn.Module:
    torch.manual_seed(0)
    block = nn.Module()
    block.norm = nn.LayerNorm(16)
    block.mlp = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16))
    return block


def test_restore_reproduces_the_quantized_block() -> None:
    fmt = parse_format("W4A16g16")
    src = _block()
    with torch.no_grad():
        src.norm.weight.mul_(1.7)
    for name in ("mlp.0", "mlp.2"):
        set_submodule(src, name, QuantLinear.from_linear(src.get_submodule(name), fmt))
    names = quantized_linear_names(src)
    assert names == ["mlp.0", "mlp.2"]

    dst = _block()
    restore_block_(dst, src.state_dict(), names, fmt)
    assert quantized_linear_names(dst) == names
    for key, value in src.state_dict().items():
        assert torch.equal(dst.state_dict()[key], value), key
    x = torch.randn(3, 16)
    torch.testing.assert_close(dst.mlp(dst.norm(x)), src.mlp(src.norm(x)), rtol=0, atol=0)
