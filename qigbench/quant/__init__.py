"""Quantizer math: formats, pure quantize/dequantize functions, and the fake-quantized linear."""

from qigbench.quant.formats import FLOAT_BITS, Granularity, QuantFormat, QuantSpec, parse_format
from qigbench.quant.linear import (
    ChannelActQuantLinear,
    QuantLinear,
    quant_linear_from_state,
    quantize_linears_,
    quantizer_state,
    set_submodule,
    straight_through_surrogate,
)
from qigbench.quant.quantizer import (
    QuantizedTensor,
    check_tensor,
    compute_qparams,
    dequantize,
    dequantize_codes,
    fake_quantize,
    fake_quantize_ste,
    fake_quantize_with,
    group_view,
    qparams_from_range,
    quantize,
    quantize_codes,
)

__all__ = [
    "FLOAT_BITS",
    "ChannelActQuantLinear",
    "Granularity",
    "QuantFormat",
    "QuantLinear",
    "QuantSpec",
    "QuantizedTensor",
    "check_tensor",
    "compute_qparams",
    "dequantize",
    "dequantize_codes",
    "fake_quantize",
    "fake_quantize_ste",
    "fake_quantize_with",
    "group_view",
    "parse_format",
    "qparams_from_range",
    "quant_linear_from_state",
    "quantize",
    "quantize_codes",
    "quantize_linears_",
    "quantizer_state",
    "set_submodule",
    "straight_through_surrogate",
]
