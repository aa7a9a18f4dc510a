"""Record how a module was called, then call it again on a different input.

The engine never knows a model's call signature: it records the ``(args, kwargs)`` a decoder
block (or an attention module) received during a real forward pass, and *replays* that call with
the hidden states swapped for another tensor. This is what lets one loop drive every
architecture, and what gives solvers a plain ``compared(x) -> y`` callable.

Solvers concatenate all calibration batches along dim 0, and QIG additionally stacks its
integration path points on top (``[k * N, T, H]``); :class:`Replay` splits such a tensor back into
per-batch calls and repeats each batch's recorded tensors ``k`` times. :meth:`Replay.rows` restricts
a replay to a subset of the calibration samples (slicing the recorded per-batch calls), which is
how attribution and the solvers stream over samples under a memory budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

#: names under which decoder blocks and attention modules take their main input
_INPUT_KWARGS = ("hidden_states", "x", "input", "hidden_state")


@dataclass
class Call:
    """One recorded call: positional and keyword arguments (tensors on the offload device)."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def with_input(self, x: torch.Tensor) -> tuple[tuple[Any, ...], dict[str, Any]]:
        for name in _INPUT_KWARGS:
            if name in self.kwargs:
                return self.args, {**self.kwargs, name: x}
        if not self.args:
            raise RuntimeError("recorded call has no positional input nor a hidden_states keyword")
        return (x, *self.args[1:]), self.kwargs

    def input(self) -> torch.Tensor:
        for name in _INPUT_KWARGS:
            if name in self.kwargs:
                return self.kwargs[name]  # type: ignore[no-any-return]
        return self.args[0]  # type: ignore[no-any-return]


def map_tensors(obj: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """Apply ``fn`` to every tensor inside nested tuples / lists / dicts."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, tuple):
        return tuple(map_tensors(o, fn) for o in obj)
    if isinstance(obj, list):
        return [map_tensors(o, fn) for o in obj]
    if isinstance(obj, dict):
        return {k: map_tensors(v, fn) for k, v in obj.items()}
    return obj


def _repeat_batch(obj: Any, batch: int, times: int) -> Any:
    """Repeat tensors whose leading dim is the batch ``times`` times (``[b] -> [times * b]``)."""
    if times == 1:
        return obj

    def rep(t: torch.Tensor) -> torch.Tensor:
        if t.dim() > 0 and t.shape[0] == batch and batch > 1:
            return t.repeat(times, *([1] * (t.dim() - 1)))
        if t.dim() > 0 and t.shape[0] == 1 and batch == 1:
            return t.expand(times, *t.shape[1:]) if t.dim() > 1 else t
        return t  # broadcastable or batch-free (e.g. 1-D positions)

    return map_tensors(obj, rep)


def _slice_batch(obj: Any, batch: int, lo: int, hi: int) -> Any:
    """Rows ``lo:hi`` of every tensor whose leading dim is the batch (the rule :func:`_repeat_batch` uses)."""

    def cut(t: torch.Tensor) -> torch.Tensor:
        return t[lo:hi] if t.dim() > 0 and t.shape[0] == batch and batch > 1 else t

    return map_tensors(obj, cut)


def slice_call(call: Call, lo: int, hi: int) -> Call:
    """The recorded call restricted to samples ``lo:hi`` of its batch (masks, rotary, input)."""
    b = int(call.input().shape[0])
    if lo == 0 and hi == b:
        return call
    return Call(_slice_batch(call.args, b, lo, hi), _slice_batch(call.kwargs, b, lo, hi))


def first_tensor(out: Any) -> torch.Tensor:
    """Decoder blocks return a tensor in transformers 5, attention modules ``(out, weights)``."""
    while isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise RuntimeError(f"module returned {type(out).__name__}, expected a tensor or a tuple starting with one")
    return out


@dataclass
class Replay:
    """Call ``module`` like it was called on each calibration batch, with new inputs."""

    module: nn.Module
    calls: list[Call]
    device: torch.device | str = "cpu"
    batch_sizes: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.batch_sizes = [int(c.input().shape[0]) for c in self.calls]

    @property
    def total(self) -> int:
        return sum(self.batch_sizes)

    def rows(self, start: int, stop: int) -> Replay:
        """This replay restricted to calibration samples ``start:stop`` (in concatenation order).

        Whole recorded batches are kept as they are; a batch cut by the range is sliced (its input
        and every tensor whose leading dim is that batch: attention masks, rotary embeddings).
        The result keeps the copy-major contract: it accepts any multiple of ``stop - start`` rows.
        """
        if not 0 <= start < stop <= self.total:
            raise ValueError(f"rows {start}:{stop} outside the {self.total} recorded calibration samples")
        calls: list[Call] = []
        offset = 0
        for call, b in zip(self.calls, self.batch_sizes, strict=True):
            lo, hi = max(start, offset) - offset, min(stop, offset + b) - offset
            if lo < hi:
                calls.append(slice_call(call, lo, hi))
            offset += b
        return Replay(self.module, calls, self.device)

    def inputs(self) -> torch.Tensor:
        """The recorded inputs of all batches, concatenated along dim 0."""
        return torch.cat([c.input() for c in self.calls], dim=0)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if n % self.total != 0:
            raise ValueError(f"input batch {n} is not a multiple of the calibration batch {self.total}")
        times = n // self.total
        stacked = x.reshape(times, self.total, *x.shape[1:])
        outs: list[torch.Tensor] = []
        start = 0
        for call, b in zip(self.calls, self.batch_sizes, strict=True):
            chunk = stacked[:, start : start + b].reshape(times * b, *x.shape[1:])
            start += b
            args, kwargs = call.with_input(chunk)
            args = _repeat_batch(to_device(args[1:], self.device), b, times)
            kwargs = _repeat_batch(to_device(kwargs, self.device), b, times)
            for name in _INPUT_KWARGS:
                if name in kwargs:
                    kwargs[name] = chunk
                    break
            else:
                args = (chunk, *args)
            y = first_tensor(self.module(*args, **kwargs))
            outs.append(y.reshape(times, b, *y.shape[1:]))
        return torch.cat(outs, dim=1).reshape(n, *outs[0].shape[2:])


def to_device(obj: Any, device: torch.device | str) -> Any:
    return map_tensors(obj, lambda t: t.to(device, non_blocking=True))


class Recorder:
    """Context manager recording the calls of several modules with forward pre-hooks."""

    def __init__(self, modules: dict[str, nn.Module], offload: torch.device | str | None = None) -> None:
        self.modules = modules
        self.offload = offload
        self.calls: dict[str, list[Call]] = {name: [] for name in modules}
        self._handles: list[Any] = []

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if self.offload is not None:
                args, kwargs = to_device(args, self.offload), to_device(kwargs, self.offload)
            self.calls[name].append(Call(tuple(args), dict(kwargs)))

        return hook

    def __enter__(self) -> Recorder:
        for name, module in self.modules.items():
            self._handles.append(module.register_forward_pre_hook(self._hook(name), with_kwargs=True))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def run_calls(
    module: nn.Module, calls: Sequence[Call], inputs: Sequence[torch.Tensor], device: torch.device | str
) -> list[torch.Tensor]:
    """Run ``module`` once per recorded call with the matching new input."""
    outs = []
    for call, x in zip(calls, inputs, strict=True):
        args, kwargs = call.with_input(x.to(device))
        outs.append(first_tensor(module(*to_device(args, device), **to_device(kwargs, device))))
    return outs
