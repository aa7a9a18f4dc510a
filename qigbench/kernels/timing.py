"""Prefill and decode latency of a causal LM: same prompt, warm, median of repeats.

Prefill is one forward over the prompt; decode is ``new_tokens`` greedy single-token steps on the
KV cache that prefill built (not timed). CUDA work is synchronised before each clock read.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Latency:
    prefill_ms: float  # median over repeats
    decode_ms_per_token: float  # median over repeats of (decode time / new tokens)
    prompt_tokens: int
    new_tokens: int
    repeats: int

    @property
    def decode_tokens_per_s(self) -> float:
        return 1000.0 / self.decode_ms_per_token

    @property
    def prefill_tokens_per_s(self) -> float:
        return 1000.0 * self.prompt_tokens / self.prefill_ms


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


@torch.no_grad()
def decode_steps(model: nn.Module, input_ids: torch.Tensor, new_tokens: int) -> tuple[float, torch.Tensor]:
    """Prefill (untimed), then ``new_tokens`` greedy steps; returns (seconds, generated ids)."""
    device = input_ids.device
    out = model(input_ids=input_ids, use_cache=True)
    past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
    generated = [token]

    def steps() -> None:
        nonlocal past, token
        for _ in range(new_tokens):
            step = model(input_ids=token, past_key_values=past, use_cache=True)
            past, token = step.past_key_values, step.logits[:, -1:].argmax(-1)
            generated.append(token)

    seconds = _timed(steps, device)
    return seconds, torch.cat(generated, dim=1)


@torch.no_grad()
def measure_latency(model: nn.Module, input_ids: torch.Tensor, new_tokens: int = 16, repeats: int = 5,
                    warmup: int = 1) -> Latency:
    device = input_ids.device
    for _ in range(warmup):
        model(input_ids=input_ids)
        decode_steps(model, input_ids, 2)
    prefill = [_timed(lambda: model(input_ids=input_ids), device) for _ in range(repeats)]
    decode = [decode_steps(model, input_ids, new_tokens)[0] / new_tokens for _ in range(repeats)]
    return Latency(
        prefill_ms=1000 * statistics.median(prefill),
        decode_ms_per_token=1000 * statistics.median(decode),
        prompt_tokens=int(input_ids.shape[1]),
        new_tokens=new_tokens,
        repeats=repeats,
    )


def resident_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and buffer (shared tensors once): the weights the model holds."""
    seen: set[int] = set()
    total = 0
    for t in [*model.parameters(), *model.buffers()]:
        if t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        total += t.numel() * t.element_size()
    return total
