"""Real low-bit execution of quantized linears, where torch has a kernel for the format.

* weight-only int4, group 32/64/128/256: torch's int4 packed matmul
  (``_weight_int4pack_mm_for_cpu`` on CPU, ``_weight_int4pack_mm`` on CUDA; bfloat16 activations);
* int8 x int8 (W8A8, and W4A8 whose 4-bit codes fit int8): ``torch._int_mm`` with the activation
  quantized per token at run time, exactly as the fake-quant model does it.

Everything else (W3, W2, per-channel int4, group sizes the op does not take, W{b}A8 with grouped
weights) has no kernel here: :func:`kernel_for` says why, and the efficiency table reports it as
"no kernel" with its size instead of a made-up speed. Kernels are built from the same codes the
packed checkpoint stores (:func:`qigbench.quant.codes.recover_codes`).
"""

from __future__ import annotations

import torch
from torch import nn

from qigbench.kernels.int4 import INT4_GROUP_SIZES, Int4WeightOnlyLinear
from qigbench.kernels.int8 import Int8DynamicLinear
from qigbench.quant import Granularity, QuantFormat, QuantLinear, parse_format, set_submodule

__all__ = ["INT4_GROUP_SIZES", "Int4WeightOnlyLinear", "Int8DynamicLinear", "kernel_for", "use_kernels_"]


def kernel_for(fmt: QuantFormat | str) -> tuple[str | None, str]:
    """``(kernel name or None, why)`` for a format."""
    fmt = parse_format(fmt)
    w = fmt.weight
    if fmt.weight_only:
        if w.bits != 4:
            return None, f"no {w.bits}-bit weight-only matmul in torch (int4 only)"
        if w.granularity is not Granularity.PER_GROUP or w.group_size not in INT4_GROUP_SIZES:
            return None, f"int4 matmul takes group sizes {INT4_GROUP_SIZES}, not {fmt.name}"
        return "int4-weight-only", "torch int4 packed matmul"
    if fmt.a_bits != 8:
        return None, f"no int{fmt.a_bits} activation matmul in torch (int8 only)"
    if w.granularity is not Granularity.PER_CHANNEL or not w.symmetric:
        return None, "int8 x int8 needs symmetric per-channel weights (one scale per output row)"
    return "int8-int8", "torch._int_mm, per-token dynamic int8 activations"


def use_kernels_(model: nn.Module, device: str = "cpu", int4_dtype: torch.dtype = torch.bfloat16) -> dict[str, str]:
    """Swap every QuantLinear whose format has a kernel for the kernel module; returns
    ``{module name: kernel or 'no kernel: why'}``. The model should already be on ``device``."""
    done: dict[str, str] = {}
    for name, module in list(model.named_modules()):
        if not isinstance(module, QuantLinear):
            continue
        kernel, why = kernel_for(module.format)
        if kernel == "int4-weight-only":
            set_submodule(model, name, Int4WeightOnlyLinear.from_quant_linear(module, device, int4_dtype))
        elif kernel == "int8-int8":
            set_submodule(model, name, Int8DynamicLinear.from_quant_linear(module))
        done[name] = kernel or f"no kernel: {why}"
    return done
