"""A sample-major calibration pass: the whole model, one calibration batch at a time, with a hook
on every chosen linear of every block that may replace that linear's input.

The block-wise loop (:mod:`qigbench.engine.run`) gives every sample the *final* state of the
blocks upstream. A method whose statistics accumulate prompt by prompt through the whole model
(Q-VLM's released calibration: at prompt s the upstream ranges hold prompts <= s only) needs the
other order; this pass provides it. Like the gradient pre-passes it holds the whole model on the
compute device (a ``device_map``'d model stays where it is).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from qigbench.tokens import valid_mask

#: hook(block index, linear name, input [B, T, C], valid-token mask [B, T]) -> replacement input
InputHook = Callable[[int, str, torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def sample_major_pass(
    model: nn.Module,
    blocks: nn.ModuleList,
    linear_names: Sequence[str],
    batches: Sequence[Any],
    hook: InputHook,
    device: torch.device | str,
) -> None:
    """Run ``model`` on each batch in order; every listed linear of every block calls ``hook``
    (in execution order) and computes on the tensor it returns."""
    current: dict[str, torch.Tensor] = {}
    handles = []

    def pre_hook(i: int, name: str) -> Any:
        def fn(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
            x = args[0]
            mask = current["mask"]
            if x.dim() != 3 or tuple(x.shape[:2]) != tuple(mask.shape):
                raise RuntimeError(
                    f"block {i} {name}: input {tuple(x.shape)} is not [B, T, C] over the batch's tokens "
                    f"{tuple(mask.shape)}; the sample-major pass needs decoder-sequence-aligned inputs"
                )
            return (hook(i, name, x, mask), *args[1:])

        return fn

    for i, block in enumerate(blocks):
        for name in linear_names:
            handles.append(block.get_submodule(name).register_forward_pre_hook(pre_hook(i, name)))
    home = next(model.parameters()).device
    if not hasattr(model, "hf_device_map"):
        model.to(device)
    try:
        for batch in batches:
            inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.inputs.items()}
            current["mask"] = valid_mask(batch.token_types).to(device)
            model(**inputs, use_cache=False)
    finally:
        for h in handles:
            h.remove()
        if not hasattr(model, "hf_device_map"):
            model.to(home)
