"""The block-wise calibration loop every method shares.

1. One cheap pass over the calibration set records block 0's input and every block's call
   arguments (:mod:`qigbench.engine.capture`).
2. For each unit of work (:class:`~qigbench.engine.contracts.WorkUnit`, the method's ``units``:
   one decoder block unless the method asks for spans): move its blocks to the compute device;
   for each of its blocks compute the fp outputs, let the method quantize it, compute its
   quantized outputs, measure the reconstruction error (:mod:`qigbench.engine.unit`); move the
   blocks back and save the unit.
3. Two propagation streams: ``fp`` (next input = full-precision output) and ``quantized``
   ("distort": next input = output of the already quantized blocks). ``auto`` picks fp for
   weight-only formats and quantized for weight-activation formats, as MBQ and QIG do.

Only the current unit (plus the embeddings/vision tower during the capture) lives on the compute
device, which is what lets large models calibrate on one GPU.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qigbench.console import progress
from qigbench.engine.capture import capture_block_inputs, place_outside_blocks
from qigbench.engine.checkpoint import Checkpoint
from qigbench.engine.collate import unify_lengths
from qigbench.engine.contracts import CalibBatch, EngineConfig, RunContext, check_units
from qigbench.engine.method import Method
from qigbench.engine.restore import restore_block_
from qigbench.engine.unit import BlockSettings, UnitContext
from qigbench.errors import QigbenchError
from qigbench.memory import CalibrationOutOfMemoryError, format_bytes, is_out_of_memory, resolve_budget
from qigbench.models.family import ModelFamily
from qigbench.quant import QuantFormat

__all__ = ["CalibBatch", "CalibrationReport", "EngineConfig", "RunContext", "calibrate"]

log = logging.getLogger(__name__)


@dataclass
class CalibrationReport:
    method: dict[str, Any]
    format: str
    propagation: str
    device: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    #: total calibration time, including the earlier run(s) a resumed run continues
    seconds: float = 0.0
    #: the share of ``seconds`` spent by those earlier runs (0 for a run that did not resume)
    resumed_seconds: float = 0.0
    peak_memory_bytes: int = 0
    resumed_from_block: int = 0
    #: block -> group -> lambda[N, T] (methods with token weights), for the sensitivity heatmap
    token_weights: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)
    #: [N, T] token types of the calibration tokens the weights refer to
    token_types: torch.Tensor | None = field(default=None, repr=False)

    @property
    def mean_block_error(self) -> float:
        errs = [b["rel_error"] for b in self.blocks]
        return sum(errs) / len(errs) if errs else 0.0


def calibrate(
    model: nn.Module,
    family: ModelFamily,
    batches: Sequence[CalibBatch],
    method: Method,
    fmt: QuantFormat,
    config: EngineConfig | None = None,
    fingerprint: dict[str, Any] | None = None,
) -> CalibrationReport:
    """Quantize ``model`` in place with ``method``; returns per-block errors and timing.

    Running out of memory (CUDA or host) raises :class:`CalibrationOutOfMemoryError`, whose message
    names ``--memory-budget`` and how to resume from the last finished unit."""
    cfg = config or EngineConfig()
    where = _Position()
    try:
        return _calibrate(model, family, batches, method, fmt, cfg, fingerprint, where)
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        block = where.unit.current if where.unit is not None else where.block
        raise out_of_memory_error(exc, cfg, method.name, block, where.block) from exc


@dataclass
class _Position:
    """Where the loop is, for the out-of-memory message: the first block of the current unit
    (-1: the capture pass) and the unit being worked on."""

    block: int = 0
    unit: UnitContext | None = None


def out_of_memory_error(
    exc: BaseException, cfg: EngineConfig, method: str, block: int, resume_at: int | None = None
) -> CalibrationOutOfMemoryError:
    """The message a user can act on: what ran out, the budget in force, the option, how to resume
    (at ``resume_at``, the first block of the unit that ran out; default ``block``)."""
    if torch.device(cfg.device).type == "cuda":
        torch.cuda.empty_cache()
    budget = resolve_budget(cfg.memory_budget, cfg.device)
    smaller = format_bytes(max(budget // 2, 2**20))
    where = f"block {block}" if block >= 0 else "the capture pass (embeddings / vision tower)"
    at = block if resume_at is None else resume_at
    if cfg.resume_dir is not None:
        resume = (f"blocks before {at} are saved in {cfg.resume_dir}: rerun the same command with "
                  f"--memory-budget {smaller} (and --resume-dir {cfg.resume_dir}) to continue from block {at}")
    else:
        resume = ("add --resume-dir DIR to keep every finished block, so a rerun continues from the last one "
                  "instead of starting over")
    return CalibrationOutOfMemoryError(
        f"{method}: out of memory on {cfg.device} in {where} with a streaming budget of {format_bytes(budget)} "
        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}). Lower the budget with "
        f"--memory-budget {smaller} (smaller chunks of calibration samples and path points), use a smaller "
        f"--batch-size, or free the device; {resume}."
    )


def _calibrate(
    model: nn.Module,
    family: ModelFamily,
    batches: Sequence[CalibBatch],
    method: Method,
    fmt: QuantFormat,
    cfg: EngineConfig,
    fingerprint: dict[str, Any] | None,
    where: _Position,
) -> CalibrationReport:
    where.block = -1
    if not isinstance(fmt, QuantFormat):  # the format is parsed once, at the edge
        raise TypeError(f"calibrate() takes a parsed QuantFormat, not {fmt!r}: pass parse_format({fmt!r})")
    propagation = cfg.resolve_propagation(fmt, method.propagation)
    start_time = time.perf_counter()
    _reset_peak_memory(cfg.device)
    model.eval()
    batches = unify_lengths(list(batches))
    blocks: nn.ModuleList = model.get_submodule(family.blocks)  # type: ignore[assignment]
    units = check_units(method.units(len(blocks)), len(blocks), type(method).__name__)
    multi_block = any(len(u) > 1 for u in units)
    report = CalibrationReport(method.describe(), fmt.name, propagation, cfg.device)
    checkpoint = None
    if cfg.resume_dir is not None:
        identity = {**(fingerprint or {}), **method.describe(), "format": fmt.name, "propagation": propagation}
        if multi_block:  # one-block units add nothing, so directories written before units existed still resume
            identity["units"] = [[u.start, u.stop] for u in units]
        checkpoint = Checkpoint(Path(cfg.resume_dir), {**identity, **_numbers_fingerprint(model, batches)})
    resume = checkpoint.open() if checkpoint else None

    run = RunContext(model, family, fmt, list(batches), cfg)
    saved_state = checkpoint.load_method_state() if checkpoint else None
    if saved_state is not None:
        method.load_state_dict(saved_state)
    else:
        method.prepare(run)
        if checkpoint:
            checkpoint.save_method_state(method.state_dict())

    place_outside_blocks(model, family.blocks, cfg.device)
    captured = capture_block_inputs(
        model, blocks, [b.inputs for b in batches], device=cfg.device, offload=cfg.offload
    )
    place_outside_blocks(model, family.blocks, cfg.offload)
    keep_q = propagation == "quantized" or method.keeps_quantized_stream()
    fp_stream = captured.hidden
    q_stream = [h.clone() for h in fp_stream] if keep_q else None
    first = 0
    carried: dict[str, Any] = {}
    if resume is not None:
        if resume.next_block not in {u.start for u in units}:
            raise QigbenchError(
                f"resume directory {cfg.resume_dir} stops after block {resume.next_block - 1}, inside one of "
                f"{type(method).__name__}'s units of work; use another --resume-dir or delete it to start over"
            )
        for i in range(resume.next_block):
            restore_block_(blocks[i], checkpoint.load_block(i), resume.block_stats[i]["quantized"], fmt)  # type: ignore[union-attr]
        fp_stream, q_stream, first = resume.fp_stream, resume.q_stream, resume.next_block
        report.blocks = list(resume.block_stats)
        report.resumed_from_block = first
        report.resumed_seconds = resume.elapsed_seconds
        if resume.block_stats:
            carried = copy.deepcopy(resume.block_stats[-1].get("carried", {}))
        log.info("resuming at block %d of %d from %s", first, len(blocks), cfg.resume_dir)

    token_types = torch.cat([b.token_types for b in batches], dim=0)
    report.token_types = token_types
    answers = [b.answer_mask for b in batches]
    answer_mask = torch.cat(answers, dim=0) if all(a is not None for a in answers) else None  # type: ignore[arg-type]
    todo = [u for u in units if u.start >= first]
    bar = progress(todo, desc=f"{method.name} {fmt.name}", unit="unit" if multi_block else "block",
                   disable=not cfg.progress)
    settings = BlockSettings(family, fmt, token_types, answer_mask, cfg.device, propagation, carried, cfg.memory_budget)
    for unit in bar:
        where.block = unit.start
        modules = [blocks[i].to(cfg.device) for i in unit]
        ctx = UnitContext(unit, modules, [captured.layer_calls[i] for i in unit], fp_stream, q_stream, settings)
        where.unit = ctx
        method.quantize_unit(ctx)
        if not ctx.finished:
            raise QigbenchError(
                f"{type(method).__name__}.quantize_unit returned with {len(ctx.stats)} of the {len(unit)} blocks of "
                f"{unit.name} done (a block is done once the loop over the unit moves past it); step through every "
                "block: for ctx in unit: ..."
            )
        where.unit = None
        if multi_block:
            for stats in ctx.stats:
                stats["unit"] = {"start": unit.start, "stop": unit.stop, **ctx.unit_stats}
        report.blocks.extend(ctx.stats)
        report.token_weights.update(ctx.token_weights)
        bar.set_postfix(err=f"{ctx.stats[-1]['rel_error']:.2e}")
        for offset, i in enumerate(unit):
            blocks[i] = ctx.modules[offset].to(cfg.offload)
        fp_stream = [t.to(cfg.offload) for t in ctx.fp_outputs]
        q_stream = [t.to(cfg.offload) for t in ctx.q_outputs] if ctx.q_outputs is not None else None
        if checkpoint:
            elapsed = report.resumed_seconds + time.perf_counter() - start_time
            states = [blocks[i].state_dict() for i in unit]
            checkpoint.save_unit(unit.start, states, ctx.stats, fp_stream, q_stream, elapsed)
    report.seconds = report.resumed_seconds + time.perf_counter() - start_time
    report.peak_memory_bytes = _peak_memory(cfg.device)
    return report


def _numbers_fingerprint(model: nn.Module, batches: Sequence[CalibBatch]) -> dict[str, Any]:
    """What else changes the numbers of a resumable run: the weights' dtype and the exact
    calibration tensors (hashed), so a resume with another dtype or data is refused."""
    digest = hashlib.sha256()
    for batch in batches:
        for key in sorted(batch.inputs):
            value = batch.inputs[key]
            if isinstance(value, torch.Tensor):
                t = value.detach().cpu().contiguous()
                digest.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
                digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        digest.update(batch.token_types.cpu().contiguous().numpy().tobytes())
    dtypes = sorted({str(p.dtype) for p in model.parameters()})
    return {"dtype": dtypes, "calibration_sha256": digest.hexdigest()[:16]}


def _reset_peak_memory(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_memory(device: str) -> int:
    """Peak accelerator memory on CUDA; peak resident set size of the process on CPU."""
    if torch.device(device).type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
