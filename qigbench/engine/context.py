"""What a method sees of one decoder block while it is being quantized.

The context owns the plumbing every method shares: the block's inputs along the fp and the
quantized propagation paths, the recorded inputs of each scaling group and linear, a
``compared(group)`` callable for solvers, and the operations that change the block (apply
scales, install quantized linears). A method only decides *what* to do with them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from qigbench.engine.held import STAT as HELD_STAT
from qigbench.engine.held import held_bytes
from qigbench.engine.replay import Call, Recorder, Replay, run_calls
from qigbench.errors import QigbenchError
from qigbench.models.family import ModelFamily
from qigbench.models.groups import ResolvedGroup, apply_scales_, block_linear_names, resolve_groups
from qigbench.models.scaling import divided_rows
from qigbench.parallel import Shard
from qigbench.quant import QuantFormat, QuantizedTensor, QuantLinear, dequantize, set_submodule
from qigbench.quant.codes import recover_codes

log = logging.getLogger(__name__)

Stream = Literal["calib", "fp", "quantized"]


def _as_linear(module: nn.Module, name: str) -> nn.Linear:
    if not isinstance(module, (nn.Linear, QuantLinear)):
        raise TypeError(f"{name} is a {type(module).__name__}, expected an nn.Linear (or QuantLinear)")
    return module  # type: ignore[return-value]  # QuantLinear offers the nn.Linear interface used here


@dataclass
class BlockContext:
    index: int
    block: nn.Module
    family: ModelFamily
    fmt: QuantFormat
    calls: list[Call]  # the block's recorded call per calibration batch
    fp_inputs: list[torch.Tensor]
    q_inputs: list[torch.Tensor] | None
    token_types: torch.Tensor  # [N, T]
    answer_mask: torch.Tensor | None  # [N, T]
    device: torch.device | str
    propagation: Literal["fp", "quantized"]
    #: JSON-able method state carried from block to block (the same dict for every block of a run;
    #: saved with each block's checkpoint, so a resumed run continues with it)
    carried: dict[str, Any] = field(default_factory=dict)
    #: bytes one streamed chunk (attribution, scale candidates) may take; None: a safe share of free memory
    memory_budget: int | None = None
    #: data-parallel runs: the samples this rank holds (``token_types``, the inputs) and the token
    #: types of every sample; None / whole in one process (see :mod:`qigbench.parallel`)
    shard: Shard | None = None
    all_token_types: torch.Tensor | None = None
    stats: dict[str, Any] = field(default_factory=dict)  # JSON-able per-block numbers (saved, reported)
    artifacts: dict[str, Any] = field(default_factory=dict)  # tensors for plots (token weights), not saved
    #: streams the unit holds beside the inputs while the method works (the fp target and the
    #: quantized output): counted in the block's ``activation_bytes`` (:mod:`qigbench.engine.held`)
    held: list[Any] = field(default_factory=list, repr=False)
    _records: dict[str, dict[str, list[Call]]] = field(default_factory=dict, repr=False)
    _groups: list[ResolvedGroup] | None = field(default=None, repr=False)
    _linear_names: list[str] | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ structure
    def groups(self, scalable_only: bool = False) -> list[ResolvedGroup]:
        if self._groups is None:
            self._groups = resolve_groups(self.block, self.family)
        return [g for g in self._groups if g.scalable or not scalable_only]

    def linear_names(self) -> list[str]:
        """Every linear of the block that gets quantized, in block order: all of them except the
        family's ``keep_fp`` list (see :func:`qigbench.models.groups.block_linear_names`)."""
        if self._linear_names is None:
            self._linear_names = block_linear_names(self.block, self.family)
        return self._linear_names

    @property
    def global_token_types(self) -> torch.Tensor:
        """``[N, T]`` over every calibration sample of every rank (``token_types`` in one process)."""
        return self.all_token_types if self.all_token_types is not None else self.token_types

    def local_rows(self, t: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a tensor over every sample (``t`` itself in one process)."""
        return t if self.shard is None else self.shard.rows(t)

    def budget(self) -> int:
        """The memory budget in bytes (resolved now when the run set none: free memory changes)."""
        from qigbench.memory import resolve_budget

        return resolve_budget(self.memory_budget, self.device)

    # ------------------------------------------------------------------ inputs
    def inputs(self, stream: Stream = "calib") -> list[torch.Tensor]:
        if stream == "fp" or (stream == "calib" and self.propagation == "fp"):
            return self.fp_inputs
        if self.q_inputs is None:
            raise RuntimeError("the quantized propagation stream was not kept for this run")
        return self.q_inputs

    def _stream_key(self, stream: Stream) -> str:
        return "fp" if stream == "fp" or (stream == "calib" and self.propagation == "fp") else "quantized"

    def _recordable(self) -> dict[str, nn.Module]:
        modules = {f"group:{g.name}": g.inspect for g in self.groups()}
        modules.update({name: self.block.get_submodule(name) for name in self.linear_names()})
        return modules

    def _record(self, stream: Stream, keys: Sequence[str] | None = None) -> dict[str, list[Call]]:
        """Recorded calls of the block's groups and linears on ``stream`` (cached until the block
        changes). With ``keys``, only those are recorded and each batch's forward pass stops as
        soon as they are captured — GPTQ's sequential re-recording then skips the rest of the block."""
        cache = self._records.setdefault(self._stream_key(stream), {})
        available = self._recordable()
        missing = [k for k in (keys if keys is not None else available) if k not in cache]
        if missing:
            modules = {k: available[k] for k in missing}
            early = keys is not None
            cache.update(record_inputs(self.block, self.calls, self.inputs(stream), modules, self.device, early))
            self.note_held()
        return cache

    def note_held(self) -> None:
        """Update the block's ``activation_bytes``: the peak of the activations held now (the streams
        in and out, the block's recorded calls, every recorded group and linear input)."""
        now = held_bytes(self.fp_inputs, self.q_inputs, self.held, self.calls, list(self._records.values()))
        self.stats[HELD_STAT] = max(int(self.stats.get(HELD_STAT, 0)), now)

    def invalidate(self) -> None:
        """Forget recorded inputs and resolved modules (after the block's weights or modules changed)."""
        self._records.clear()
        self._groups = None
        self._linear_names = None

    def group(self, name: str) -> ResolvedGroup:
        """The group bound to the block's *current* modules (linears may have been replaced)."""
        for g in self.groups():
            if g.name == name:
                return g
        raise KeyError(f"block {self.index} has no scaling group {name!r}")

    def group_input(self, group: ResolvedGroup, stream: Stream = "calib") -> torch.Tensor:
        key = f"group:{group.name}"
        return torch.cat([c.input() for c in self._record(stream, [key])[key]], dim=0)

    def linear_input(self, name: str, stream: Stream = "calib") -> torch.Tensor:
        return torch.cat([c.input() for c in self.linear_calls(name, stream)], dim=0)

    def linear_calls(self, name: str, stream: Stream = "calib") -> list[Call]:
        """How linear ``name`` was called per batch; linears fed the same tensor (q/k/v, gate/up)
        share the recorded input objects, so ``id(call.input())`` tells them apart."""
        return self._record(stream, [name])[name]

    def compared(self, group: ResolvedGroup, stream: Stream = "calib") -> Replay:
        """``compared(x) -> y``: the group's inspected module called as in the real forward pass."""
        key = f"group:{group.name}"
        calls = self._record(stream, [key])[key]
        return Replay(self.group(group.name).inspect, calls, self.device)

    # ------------------------------------------------------------------ changes
    def apply_scales_(self, group: ResolvedGroup, scales: torch.Tensor) -> None:
        prev = self.block.get_submodule(group.spec.prev_op)
        codes = _grid_codes(prev, self.fmt) if isinstance(prev, QuantLinear) else None
        apply_scales_(self.block, group, scales)
        if codes is not None:  # an already-quantized prev op (group-sequential): keep its rows on a grid
            assert isinstance(prev, QuantLinear)
            s = scales.detach().float().to(codes.scale.device)  # only the group's rows of a fused prev op
            scale = divided_rows(codes.scale, s, group.prev_rows)
            prev.weight.data.copy_(dequantize(dataclasses.replace(codes, scale=scale)))
        # Only this group's inputs change (they are now x / s); every other module of the block sees
        # the same fp values as before, so their recorded inputs stay valid (as in AWQ).
        for cache in self._records.values():
            for key in (f"group:{group.name}", *group.linear_names):
                cache.pop(key, None)

    def linear(self, name: str) -> nn.Linear:
        """The float linear ``name`` of the block (an error once it has been quantized)."""
        module = self.block.get_submodule(name)
        if isinstance(module, QuantLinear):
            raise RuntimeError(f"{name} of block {self.index} is already quantized")
        return _as_linear(module, name)

    def quantize_linear_(self, name: str, weight: torch.Tensor | None = None) -> None:
        """Install a QuantLinear for ``name`` (RTN when ``weight`` is None, else that quantized weight)."""
        linear = self.linear(name)
        set_submodule(self.block, name, QuantLinear.from_linear(linear, self.fmt, quantized_weight=weight))

    def replace_linear_(self, name: str, module: nn.Module) -> None:
        """Install an already-built quantized module (e.g. a ChannelActQuantLinear) for ``name``."""
        self.linear(name)  # refuses a linear that is already quantized
        set_submodule(self.block, name, module)
        self.invalidate()

    def quantize_group_(self, group: ResolvedGroup, weights: dict[str, torch.Tensor] | None = None) -> None:
        """Quantize the group's still-float linears now (RTN, or the given quantized weights) and
        forget the recorded inputs, so the next group is recorded on the output of this quantized
        group: group-sequential ("quantization-exposed") calibration inside a block."""
        for name in self.group(group.name).linear_names:
            if not isinstance(self.block.get_submodule(name), QuantLinear):
                self.quantize_linear_(name, None if weights is None else weights.get(name))
        self.invalidate()

    def rtn_(self) -> None:
        """Round-to-nearest every remaining float linear of the block."""
        for name in self.linear_names():
            if not isinstance(self.block.get_submodule(name), QuantLinear):
                self.quantize_linear_(name)
        self.invalidate()

    # ------------------------------------------------------------------ running
    @torch.no_grad()
    def run(self, stream: Stream = "calib") -> list[torch.Tensor]:
        """The block's outputs on ``stream``; the pass also records every group's and linear's
        input if they are not cached yet, so the first search costs no extra forward pass."""
        key = self._stream_key(stream)
        if self._records.get(key):
            return run_calls(self.block, self.calls, self.inputs(stream), self.device)
        with Recorder(self._recordable()) as rec:
            outputs = run_calls(self.block, self.calls, self.inputs(stream), self.device)
        self._records[key] = rec.calls
        return outputs

    def log(self, group: str, **values: Any) -> None:
        self.stats.setdefault("groups", {}).setdefault(group, {}).update(values)


def _grid_codes(module: QuantLinear, fmt: QuantFormat) -> QuantizedTensor | None:
    """The integer codes of a quantized weight, so that dividing its rows by ``s`` can be done on the
    codes' scales (``scale / s``): the rows stay exactly on a grid and remain packable."""
    try:
        return recover_codes(module.weight.data, fmt.weight)
    except QigbenchError:
        return None  # not on the format's grid (e.g. NF4): plain division


class _Captured(Exception):
    """Raised by a recording hook once every wanted module has been seen in this forward pass."""


def record_inputs(
    block: nn.Module,
    calls: list[Call],
    inputs: list[torch.Tensor],
    modules: dict[str, nn.Module],
    device: Any,
    stop_early: bool = False,
) -> dict[str, list[Call]]:
    """Run ``block`` per calibration batch and record how each of ``modules`` is called."""
    rec = Recorder(modules)
    if not stop_early:
        with torch.no_grad(), rec:
            run_calls(block, calls, inputs, device)
        return rec.calls

    calls_started = [0]

    def stop_when_complete(module: nn.Module, args: Any, kwargs: Any) -> None:
        if all(len(rec.calls[k]) == calls_started[0] for k in modules):
            raise _Captured

    with torch.no_grad(), rec:
        # registered after the recorder's hooks, so they run after the input was recorded
        handles = [m.register_forward_pre_hook(stop_when_complete, with_kwargs=True) for m in modules.values()]
        try:
            for call, x in zip(calls, inputs, strict=True):
                calls_started[0] += 1
                with contextlib.suppress(_Captured):
                    run_calls(block, [call], [x], device)
        finally:
            for h in handles:
                h.remove()
    return rec.calls
