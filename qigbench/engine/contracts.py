"""The contracts a method and the block loop share: what a method's hooks are given.

Both :mod:`qigbench.engine.method` (the interface methods implement) and
:mod:`qigbench.engine.run` (the loop that calls them) import from here, so the dependency runs one
way: ``contracts`` <- ``method`` <- ``run``. Nothing here imports either of them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import torch
from torch import nn

from qigbench.errors import QigbenchError
from qigbench.models.family import ModelFamily
from qigbench.quant import QuantFormat


class CalibBatch(Protocol):
    """What the engine needs of a calibration batch (see :mod:`qigbench.data`)."""

    inputs: dict[str, torch.Tensor]
    token_types: torch.Tensor
    answer_mask: torch.Tensor | None


@dataclass(frozen=True)
class EngineConfig:
    device: str = "cpu"
    offload: str = "cpu"
    propagation: Literal["auto", "fp", "quantized"] = "auto"
    resume_dir: Path | None = None
    progress: bool = True
    #: bytes a streamed chunk (attribution, scale candidates) may take; None: a safe share of free memory
    memory_budget: int | None = None

    def resolve_propagation(
        self, fmt: QuantFormat, method_default: Literal["fp", "quantized"] | None = None
    ) -> Literal["fp", "quantized"]:
        """The stream the next block is fed. ``auto``: the method's own rule when it has one
        (``Method.propagation``: GPTQ's paper feeds every block the quantized outputs, SmoothQuant's
        takes its statistics from the fp model), else the format's: fp for weight-only formats,
        the quantized path for weight-activation ones (MBQ, QIG: methods.md)."""
        if self.propagation == "auto":
            if method_default is not None:
                return method_default
            return "fp" if fmt.weight_only else "quantized"
        return self.propagation


@dataclass
class RunContext:
    """What a method's ``prepare`` sees: the whole model and the calibration batches."""

    model: nn.Module
    family: ModelFamily
    fmt: QuantFormat
    batches: list[CalibBatch]
    config: EngineConfig

    @property
    def blocks(self) -> nn.ModuleList:
        return self.model.get_submodule(self.family.blocks)  # type: ignore[return-value]


@dataclass(frozen=True)
class WorkUnit:
    """The loop's unit of work: decoder blocks ``start .. stop - 1``, calibrated together.

    The blocks of a unit are on the compute device together, the propagation streams pass from
    one to the next without leaving it, and the unit is checkpointed as a whole (a resumed run
    continues at a unit boundary). The default unit is one block (:func:`one_block_units`)."""

    start: int
    stop: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.stop:
            raise QigbenchError(f"a work unit spans at least one block, got blocks {self.start}..{self.stop - 1}")

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start

    @property
    def name(self) -> str:
        return f"block {self.start}" if len(self) == 1 else f"blocks {self.start}-{self.stop - 1}"


def one_block_units(n_blocks: int) -> list[WorkUnit]:
    """One unit per decoder block: the loop every method uses unless it asks for spans."""
    return [WorkUnit(i, i + 1) for i in range(n_blocks)]


def spans_of(n_blocks: int, size: int) -> list[WorkUnit]:
    """Consecutive spans of ``size`` blocks (the last one shorter when ``size`` does not divide)."""
    if size < 1:
        raise QigbenchError(f"a work unit spans at least one block; got a span of {size}")
    return [WorkUnit(i, min(i + size, n_blocks)) for i in range(0, n_blocks, size)]


def check_units(units: Sequence[WorkUnit], n_blocks: int, owner: str) -> list[WorkUnit]:
    """``units`` must cover blocks ``0 .. n_blocks - 1`` once each, in order."""
    units = list(units)
    expected = 0
    for unit in units:
        if unit.start != expected:
            break
        expected = unit.stop
    if expected != n_blocks or not units:
        spans = ", ".join(f"{u.start}..{u.stop - 1}" for u in units) or "(none)"
        raise QigbenchError(
            f"{owner}.units({n_blocks}) returned the spans {spans}; they must cover blocks 0..{n_blocks - 1} "
            "once each, in order, without gaps (see qigbench.engine.contracts.spans_of)"
        )
    return units
