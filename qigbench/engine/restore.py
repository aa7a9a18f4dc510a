"""Put a saved quantized block back into a model (resume, and loading a saved quantized model)."""

from __future__ import annotations

import torch
from torch import nn

from qigbench.quant import QuantFormat, QuantLinear, quant_linear_from_state, set_submodule


def quantized_linear_names(block: nn.Module) -> list[str]:
    return [name for name, m in block.named_modules() if isinstance(m, QuantLinear)]


def restore_block_(block: nn.Module, state: dict[str, torch.Tensor], quantized: list[str], fmt: QuantFormat) -> None:
    """Turn the listed linears into QuantLinears holding the saved (already quantized) weights,
    then load the rest of the block's state (scaled norms, biases) exactly."""
    for name in quantized:
        linear = block.get_submodule(name)
        if not isinstance(linear, QuantLinear):
            set_submodule(block, name, quant_linear_from_state(state, name, fmt))
    block.load_state_dict(state, strict=True)
