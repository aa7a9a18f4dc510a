"""Capture what the decoder blocks receive, without running them.

Every block is swapped for a pass-through that records its call (hidden states, attention mask,
rotary embeddings, position ids...) and returns the hidden states unchanged; the last one stops
the forward pass. So one cheap pass over the calibration set yields block 0's input *and* the
per-layer keyword arguments (masks differ per layer for sliding-window layers), whatever the
architecture. Only the modules outside the blocks (embeddings, vision tower, rotary) need to be
on the compute device for this.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from qigbench.engine.replay import Call, map_tensors


class _StopForward(Exception):
    pass


class _PassThrough(nn.Module):
    """Stands in for a decoder block during capture; attribute reads fall through to the block."""

    def __init__(self, inner: nn.Module, sink: list[Call], stop: bool, offload: Any) -> None:
        super().__init__()
        self.inner = inner
        self._sink = sink
        self._stop = stop
        self._offload = offload

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["inner"], name)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        call = Call(tuple(self._offload(args)), dict(self._offload(kwargs)))
        self._sink.append(call)
        if self._stop:
            raise _StopForward
        return call_input(args, kwargs)


def call_input(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> torch.Tensor:
    return kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]


@dataclass
class CapturedInputs:
    """Per calibration batch: block 0's input; per layer and batch: the recorded block call."""

    hidden: list[torch.Tensor]
    layer_calls: list[list[Call]]


def place_outside_blocks(model: nn.Module, blocks_path: str, device: torch.device | str) -> None:
    """Move every module except the decoder blocks to ``device`` (blocks stay where they are)."""

    def visit(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            path = f"{prefix}.{name}" if prefix else name
            if path == blocks_path:
                continue
            if blocks_path.startswith(path + "."):
                visit(child, path)
            else:
                child.to(device)
        for param in module.parameters(recurse=False):
            param.data = param.data.to(device)
        for name, buf in module.named_buffers(recurse=False):
            setattr(module, name, buf.to(device)) if buf is not None else None

    visit(model, "")


@torch.no_grad()
def capture_block_inputs(
    model: nn.Module,
    blocks: nn.ModuleList,
    batches: Iterable[Mapping[str, torch.Tensor]],
    *,
    device: torch.device | str,
    offload: torch.device | str,
) -> CapturedInputs:
    memo: dict[int, torch.Tensor] = {}

    def offload_fn(obj: Any) -> Any:
        def move(t: torch.Tensor) -> torch.Tensor:
            key = id(t)
            if key not in memo:
                memo[key] = t.detach().to(offload)
            return memo[key]

        return map_tensors(obj, move)

    n = len(blocks)
    sinks: list[list[Call]] = [[] for _ in range(n)]
    originals = list(blocks)
    for i, block in enumerate(originals):
        blocks[i] = _PassThrough(block, sinks[i], stop=i == n - 1, offload=offload_fn)
    try:
        for batch in batches:
            memo.clear()
            inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            try:
                model(**inputs, use_cache=False)
            except _StopForward:
                pass
            else:
                raise RuntimeError("the forward pass never reached the last decoder block; is the blocks path right?")
    finally:
        for i, block in enumerate(originals):
            blocks[i] = block
    hidden = [call_input(c.args, c.kwargs) for c in sinks[0]]
    return CapturedInputs(hidden=hidden, layer_calls=sinks)
