"""The fake-quant checkpoint: float weights on the quantization grid, plain ``nn.Linear`` layers.

As large as the float model; kept for tools that want the dequantized weights, and for
(rare) groups a packed layout cannot store (see :mod:`qigbench.quant.codes`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from qigbench.quant import QuantLinear, set_submodule

FORMAT_NAME = "fake-quant"


def save_fake_quant(model: nn.Module, out: Path, save: Callable[[nn.Module, Path], Any]) -> dict[str, Any]:
    swapped = _to_plain_linears(model)
    try:
        save(model, out)
    finally:
        for name, qlinear in swapped.items():
            set_submodule(model, name, qlinear)
    return {"export": FORMAT_NAME}


def _to_plain_linears(model: nn.Module) -> dict[str, QuantLinear]:
    swapped: dict[str, QuantLinear] = {}
    for name, module in list(model.named_modules()):
        if isinstance(module, QuantLinear):
            plain = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
            plain.weight = module.weight
            plain.bias = module.bias  # type: ignore[assignment]
            set_submodule(model, name, plain)
            swapped[name] = module
    return swapped
