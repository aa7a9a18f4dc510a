"""Weight-only int4 through torch's own packed matmul ("tinygemm" layout).

torch computes ``W = (q - 8) * scale + zero`` per group with ``q`` in ``[0, 15]``; ours is
``W = s (q - z)``, so ``scale = s`` and ``zero = (8 - z) s``. Symmetric codes (``[-8, 7]``) are
shifted by 8 with ``z = 0`` in torch's terms. On CUDA the op wants bfloat16 activations and
scales. On CPU float32 works too but is a slow fallback (measured here: ~7x *slower* than the
dense fp32 matmul for one token, ~13x faster in bfloat16), so bfloat16 is the default there too;
``compute_dtype=torch.float32`` gives the exact-as-float reference the tests check.
"""

from __future__ import annotations

import torch
from torch import nn

from qigbench.quant import QuantLinear
from qigbench.quant.codes import recover_codes

INT4_GROUP_SIZES = (32, 64, 128, 256)
_INNER_K_TILES = 2


class Int4WeightOnlyLinear(nn.Module):
    packed: torch.Tensor
    scales_and_zeros: torch.Tensor
    bias: torch.Tensor | None

    def __init__(
        self, codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None, bias: torch.Tensor | None,
        group_size: int, device: str | torch.device = "cpu", compute_dtype: torch.dtype = torch.bfloat16,
    ) -> None:
        """``codes`` ``[N, K]`` in the format's range, ``scale`` / ``zero`` ``[N, K // group_size]``."""
        super().__init__()
        device = torch.device(device)
        self.out_features, self.in_features = codes.shape
        self.group_size = group_size
        unsigned = codes.to(torch.int32) + (8 if zero is None else 0)
        # torch's zero is a float offset: (8 - z) s; symmetric codes shifted by 8 have z = 8 -> offset 0
        z = torch.full_like(scale, 8.0) if zero is None else zero.float()
        offset = (8.0 - z) * scale
        self.on_cuda = device.type == "cuda"
        if self.on_cuda and compute_dtype != torch.bfloat16:
            raise ValueError("the CUDA int4 matmul takes bfloat16 activations only")
        self.compute_dtype = compute_dtype
        if self.on_cuda:
            pairs = (unsigned[:, ::2] << 4 | unsigned[:, 1::2]).to(torch.uint8).to(device)
            packed = torch.ops.aten._convert_weight_to_int4pack(pairs, _INNER_K_TILES)
        else:
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(unsigned, _INNER_K_TILES)
        self.register_buffer("packed", packed)
        sz = torch.stack([scale.float(), offset.float()], dim=-1).transpose(0, 1).contiguous()
        self.register_buffer("scales_and_zeros", sz.to(device=device, dtype=self.compute_dtype))
        b = None if bias is None else bias.detach().to(device=device, dtype=self.compute_dtype)
        self.register_buffer("bias", b)

    @classmethod
    def from_quant_linear(
        cls, linear: QuantLinear, device: str | torch.device = "cpu", compute_dtype: torch.dtype = torch.bfloat16
    ) -> Int4WeightOnlyLinear:
        spec = linear.format.weight
        if spec.bits != 4 or spec.group_size not in INT4_GROUP_SIZES:
            raise ValueError(f"int4 kernel needs 4-bit weights in groups of {INT4_GROUP_SIZES}, got {spec}")
        qt = recover_codes(linear.weight.data.float().cpu(), spec)
        rows = linear.out_features
        zero = None if qt.zero is None else qt.zero.reshape(rows, -1)
        return cls(qt.codes.reshape(rows, -1), qt.scale.reshape(rows, -1), zero, linear.bias,
                   spec.group_size, device=device, compute_dtype=compute_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.in_features).to(self.compute_dtype)
        if self.on_cuda:
            y = torch.ops.aten._weight_int4pack_mm(flat, self.packed, self.group_size, self.scales_and_zeros)
        else:
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, self.packed, self.group_size, self.scales_and_zeros)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int4 g{self.group_size}"
