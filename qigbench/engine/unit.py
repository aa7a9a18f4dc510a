"""One unit of work of the block loop (:class:`~qigbench.engine.contracts.WorkUnit`) as a method
sees it: the unit's blocks on the compute device, the streams entering it, and its blocks one at a
time as :class:`~qigbench.engine.context.BlockContext`.

Iterating a :class:`UnitContext` is the per-block step every method shares::

    for ctx in unit:            # block ctx.index: fp outputs and the error target are computed
        quantize(ctx)           # the method quantizes it
                                # the engine measures it and passes the streams to the next block

A method whose unit is a span of blocks may also look at the whole span (``unit.modules``,
``unit.inputs(stream)``, ``unit.run(stream)`` before any block is changed: the fp reference of the
span's output) and record span-level numbers with ``unit.log``.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from qigbench import parallel
from qigbench.engine.context import BlockContext, Stream
from qigbench.engine.contracts import WorkUnit
from qigbench.engine.replay import Call, run_calls
from qigbench.engine.restore import quantized_linear_names
from qigbench.errors import QigbenchError
from qigbench.models.family import ModelFamily
from qigbench.parallel import Shard
from qigbench.quant import QuantFormat
from qigbench.tokens import valid_mask

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BlockSettings:
    """What the context of every block of a run shares (built once per run by the loop)."""

    family: ModelFamily
    fmt: QuantFormat
    token_types: torch.Tensor  # [N, T] of the whole calibration set
    answer_mask: torch.Tensor | None
    device: torch.device | str
    propagation: Literal["fp", "quantized"]
    #: the run's carried method state: one dict for the whole run (see :attr:`BlockContext.carried`)
    carried: dict[str, Any]
    memory_budget: int | None = None
    #: which samples this rank holds (``token_types`` are theirs) and the token types of all of
    #: them (see :mod:`qigbench.parallel`; in one process the shard is whole)
    shard: Shard | None = None
    all_token_types: torch.Tensor | None = None

    def context(
        self, index: int, block: nn.Module, calls: list[Call], fp: list[torch.Tensor], q: list[torch.Tensor] | None
    ) -> BlockContext:
        return BlockContext(
            index=index, block=block, family=self.family, fmt=self.fmt, calls=calls, fp_inputs=fp, q_inputs=q,
            token_types=self.token_types, answer_mask=self.answer_mask, device=self.device,
            propagation=self.propagation, carried=self.carried, memory_budget=self.memory_budget,
            shard=self.shard, all_token_types=self.all_token_types,
        )


@dataclass
class UnitContext:
    unit: WorkUnit
    #: the unit's decoder blocks, on the compute device, in order
    modules: list[nn.Module]
    #: per block of the unit: its recorded call per calibration batch
    calls: list[list[Call]]
    #: the streams entering the unit
    fp_inputs: list[torch.Tensor]
    q_inputs: list[torch.Tensor] | None
    settings: BlockSettings
    #: per finished block: its stats (as in :attr:`CalibrationReport.blocks`)
    stats: list[dict[str, Any]] = field(default_factory=list)
    #: per finished block: group -> lambda[N, T] (methods with token weights)
    token_weights: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    #: span-level numbers (``log``), reported with every block of a multi-block unit
    unit_stats: dict[str, Any] = field(default_factory=dict)
    #: the block being worked on (for error messages)
    current: int = field(init=False)
    #: the streams leaving the last finished block (the unit's inputs before the first)
    fp_outputs: list[torch.Tensor] = field(init=False)
    q_outputs: list[torch.Tensor] | None = field(init=False)

    def __post_init__(self) -> None:
        self.fp_outputs, self.q_outputs = self.fp_inputs, self.q_inputs
        self.current = self.unit.start

    @property
    def token_types(self) -> torch.Tensor:
        return self.settings.token_types

    @property
    def finished(self) -> bool:
        return len(self.stats) == len(self.unit)

    def inputs(self, stream: Stream = "calib") -> list[torch.Tensor]:
        """The streams entering the unit (``calib``: the one the run propagates)."""
        if stream == "fp" or (stream == "calib" and self.settings.propagation == "fp"):
            return self.fp_inputs
        if self.q_inputs is None:
            raise RuntimeError("the quantized propagation stream was not kept for this run")
        return self.q_inputs

    @torch.no_grad()
    def run(self, stream: Stream = "calib") -> list[torch.Tensor]:
        """The unit's output: its blocks as they are now, one after the other, on the stream entering it."""
        hidden = self.inputs(stream)
        for module, calls in zip(self.modules, self.calls, strict=True):
            hidden = run_calls(module, calls, hidden, self.settings.device)
        return hidden

    def log(self, **values: Any) -> None:
        self.unit_stats.update(values)

    def __iter__(self) -> Iterator[BlockContext]:
        if self.stats:
            raise QigbenchError(f"the blocks of {self.unit.name} were already stepped through; iterate a unit once")
        for offset, i in enumerate(self.unit):
            self.current = i
            t0 = time.perf_counter()
            block = self.modules[offset]
            ctx = self.settings.context(i, block, self.calls[offset], self.fp_outputs, self.q_outputs)
            propagation = self.settings.propagation
            fp_next = ctx.run("fp")
            target = fp_next if propagation == "fp" else ctx.run("quantized")
            ctx.held = [fp_next, target]
            ctx.note_held()
            yield ctx
            quantized = quantized_linear_names(block)
            calib_out = ctx.run("calib") if propagation == "fp" else None
            q_next = ctx.run("quantized") if self.q_outputs is not None else None
            ctx.held = [fp_next, target, calib_out, q_next]
            ctx.note_held()
            produced = calib_out if calib_out is not None else q_next
            assert produced is not None
            rel_error = relative_error(produced, target, self.token_types)
            stats = {"block": i, "rel_error": rel_error, "seconds": time.perf_counter() - t0, "quantized": quantized}
            stats.update(ctx.stats)
            if self.settings.carried:
                stats["carried"] = copy.deepcopy(self.settings.carried)
            self.stats.append(stats)
            if "token_weights" in ctx.artifacts:
                self.token_weights[i] = ctx.artifacts["token_weights"]
            log.info("block %d: rel. error %.3e in %.2fs", i, rel_error, stats["seconds"])
            self.fp_outputs, self.q_outputs = fp_next, q_next


def relative_error(out: list[torch.Tensor], ref: list[torch.Tensor], token_types: torch.Tensor) -> float:
    """sum |out - ref|^2 / sum |ref|^2 over the valid (non-padding) tokens of every batch (of every
    rank: both sums are all-reduced, so the record holds the error of the whole calibration set)."""
    num = den = 0.0
    start = 0
    for o, r in zip(out, ref, strict=True):
        mask = valid_mask(token_types[start : start + o.shape[0]]).to(o.device)
        start += o.shape[0]
        diff = (o.float() - r.float())[mask]
        num += float(diff.pow(2).sum())
        den += float(r.float()[mask].pow(2).sum())
    num, den = parallel.sum_floats(num, den)
    return num / max(den, 1e-30)
