"""int8 x int8 matmul (``torch._int_mm``) with per-token dynamic activation quantization.

The activation quantizer is ours (:func:`qigbench.quant.compute_qparams` /
:func:`~qigbench.quant.quantize_codes`), so the codes equal the fake-quant model's; the int32
accumulation is exact and only the final rescale rounds differently from the float matmul.
"""

from __future__ import annotations

import torch
from torch import nn

from qigbench.quant import QuantLinear, compute_qparams, quantize_codes
from qigbench.quant.codes import recover_codes
from qigbench.quant.formats import QuantSpec

#: torch._int_mm on CUDA wants more than 16 rows and K, N multiples of 8
_CUDA_MIN_ROWS = 32


class Int8DynamicLinear(nn.Module):
    weight_int8: torch.Tensor
    scale: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, codes: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None, act: QuantSpec) -> None:
        """``codes`` ``[N, K]`` int8-representable, ``scale`` ``[N]`` (one per output row)."""
        super().__init__()
        self.out_features, self.in_features = codes.shape
        self.act = act
        # [N, K] row-major, handed to _int_mm as its transpose (column-major), the layout cuBLASLt wants
        self.register_buffer("weight_int8", codes.to(torch.int8).contiguous())
        self.register_buffer("scale", scale.float().reshape(1, -1))
        self.register_buffer("bias", None if bias is None else bias.detach().float())

    @classmethod
    def from_quant_linear(cls, linear: QuantLinear) -> Int8DynamicLinear:
        fmt = linear.format
        if fmt.activation is None or fmt.a_bits != 8 or not fmt.weight.symmetric or fmt.weight.group_size:
            raise ValueError(f"int8 x int8 kernel needs W<=8 symmetric per-channel weights and A8, got {fmt}")
        qt = recover_codes(linear.weight.data.float().cpu(), fmt.weight)
        mod = cls(qt.codes.reshape(linear.out_features, -1), qt.scale.reshape(-1), linear.bias, fmt.activation)
        return mod.to(linear.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.in_features).float()
        s_x, _ = compute_qparams(flat, self.act)  # [M, 1, 1]
        s_x = s_x.reshape(-1, 1)
        q = quantize_codes(flat, s_x, None, self.act).to(torch.int8)
        rows = q.shape[0]
        if q.is_cuda and rows < _CUDA_MIN_ROWS:
            q = torch.nn.functional.pad(q, (0, 0, 0, _CUDA_MIN_ROWS - rows))
        acc = torch._int_mm(q, self.weight_int8.t())[:rows]
        y = acc.float() * s_x * self.scale
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 x int8"
