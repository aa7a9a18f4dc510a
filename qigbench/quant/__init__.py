"""Quantizer math: formats, pure quantize/dequantize functions, and the fake-quantized linear.

The names are imported on first use (PEP 562): ``qigbench formats`` and anything else that only
parses format strings (:mod:`qigbench.quant.formats`, pure Python) never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

#: public name -> the submodule that defines it
_WHERE = {
    "ChannelActQuantLinear": "qigbench.quant.linear",
    "FLOAT_BITS": "qigbench.quant.formats",
    "Granularity": "qigbench.quant.formats",
    "QuantFormat": "qigbench.quant.formats",
    "QuantLinear": "qigbench.quant.linear",
    "QuantSpec": "qigbench.quant.formats",
    "QuantizedTensor": "qigbench.quant.quantizer",
    "check_tensor": "qigbench.quant.quantizer",
    "compute_qparams": "qigbench.quant.quantizer",
    "dequantize": "qigbench.quant.quantizer",
    "dequantize_codes": "qigbench.quant.quantizer",
    "fake_quantize": "qigbench.quant.quantizer",
    "fake_quantize_ste": "qigbench.quant.quantizer",
    "fake_quantize_with": "qigbench.quant.quantizer",
    "group_view": "qigbench.quant.quantizer",
    "parse_format": "qigbench.quant.formats",
    "qparams_from_range": "qigbench.quant.quantizer",
    "quant_linear_from_state": "qigbench.quant.linear",
    "quantize": "qigbench.quant.quantizer",
    "quantize_codes": "qigbench.quant.quantizer",
    "quantize_linears_": "qigbench.quant.linear",
    "quantizer_state": "qigbench.quant.linear",
    "set_submodule": "qigbench.quant.linear",
    "straight_through_surrogate": "qigbench.quant.linear",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


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
