"""The block-wise calibration loop every method shares.

1. One cheap pass over the calibration set records block 0's input and every block's call
   arguments (:mod:`qigbench.engine.capture`).
2. For each block: move it to the compute device, compute its fp outputs, let the method quantize
   it, compute its quantized outputs, measure the reconstruction error, move it back, save it.
3. Two propagation streams: ``fp`` (next input = full-precision output) and ``quantized``
   ("distort": next input = output of the already quantized blocks). ``auto`` picks fp for
   weight-only formats and quantized for weight-activation formats, as MBQ and QIG do.

Only the current block (plus the embeddings/vision tower during the capture) lives on the compute
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
from typing import Any, Literal, Protocol

import torch
from torch import nn

from qigbench.console import progress
from qigbench.engine.capture import capture_block_inputs, place_outside_blocks
from qigbench.engine.checkpoint import Checkpoint
from qigbench.engine.collate import unify_lengths
from qigbench.engine.context import BlockContext
from qigbench.engine.method import Method
from qigbench.engine.restore import quantized_linear_names, restore_block_
from qigbench.memory import CalibrationOutOfMemoryError, format_bytes, is_out_of_memory, resolve_budget
from qigbench.models.family import ModelFamily
from qigbench.quant import QuantFormat, parse_format
from qigbench.tokens import valid_mask

log = logging.getLogger(__name__)


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

    def resolve_propagation(self, fmt: QuantFormat) -> Literal["fp", "quantized"]:
        if self.propagation == "auto":
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
    fmt: QuantFormat | str,
    config: EngineConfig | None = None,
    fingerprint: dict[str, Any] | None = None,
) -> CalibrationReport:
    """Quantize ``model`` in place with ``method``; returns per-block errors and timing.

    Running out of memory (CUDA or host) raises :class:`CalibrationOutOfMemoryError`, whose message
    names ``--memory-budget`` and how to resume from the last finished block."""
    cfg = config or EngineConfig()
    block = [0]
    try:
        return _calibrate(model, family, batches, method, fmt, cfg, fingerprint, block)
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        raise out_of_memory_error(exc, cfg, method.name, block[0]) from exc


def out_of_memory_error(exc: BaseException, cfg: EngineConfig, method: str, block: int) -> CalibrationOutOfMemoryError:
    """The message a user can act on: what ran out, the budget in force, the option, how to resume."""
    if torch.device(cfg.device).type == "cuda":
        torch.cuda.empty_cache()
    budget = resolve_budget(cfg.memory_budget, cfg.device)
    smaller = format_bytes(max(budget // 2, 2**20))
    where = f"block {block}" if block >= 0 else "the capture pass (embeddings / vision tower)"
    if cfg.resume_dir is not None:
        resume = (f"blocks before {block} are saved in {cfg.resume_dir}: rerun the same command with "
                  f"--memory-budget {smaller} (and --resume-dir {cfg.resume_dir}) to continue from block {block}")
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
    fmt: QuantFormat | str,
    cfg: EngineConfig,
    fingerprint: dict[str, Any] | None,
    current_block: list[int],
) -> CalibrationReport:
    current_block[0] = -1
    fmt = parse_format(fmt)
    propagation = cfg.resolve_propagation(fmt)
    start_time = time.perf_counter()
    _reset_peak_memory(cfg.device)
    model.eval()
    batches = unify_lengths(list(batches))
    blocks: nn.ModuleList = model.get_submodule(family.blocks)  # type: ignore[assignment]
    report = CalibrationReport(method.describe(), fmt.name, propagation, cfg.device)
    checkpoint = None
    if cfg.resume_dir is not None:
        identity = {**(fingerprint or {}), **method.describe(), "format": fmt.name, "propagation": propagation}
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
    bar = progress(range(first, len(blocks)), desc=f"{method.name} {fmt.name}", unit="block", disable=not cfg.progress)
    for i in bar:
        current_block[0] = i
        t0 = time.perf_counter()
        block = blocks[i].to(cfg.device)
        calls = captured.layer_calls[i]
        ctx = BlockContext(
            index=i, block=block, family=family, fmt=fmt, calls=calls, fp_inputs=fp_stream, q_inputs=q_stream,
            token_types=token_types, answer_mask=answer_mask, device=cfg.device, propagation=propagation,
            carried=carried,
            memory_budget=cfg.memory_budget,
        )
        fp_next = ctx.run("fp")
        target = fp_next if propagation == "fp" else ctx.run("quantized")
        method.quantize_block(ctx)
        quantized = quantized_linear_names(block)
        calib_out = ctx.run("calib") if propagation == "fp" else None
        q_next = ctx.run("quantized") if q_stream is not None else None
        produced = calib_out if calib_out is not None else q_next
        assert produced is not None
        rel_error = _relative_error(produced, target, token_types)
        stats = {"block": i, "rel_error": rel_error, "seconds": time.perf_counter() - t0, "quantized": quantized}
        stats.update(ctx.stats)
        if carried:
            stats["carried"] = copy.deepcopy(carried)
        report.blocks.append(stats)
        if "token_weights" in ctx.artifacts:
            report.token_weights[i] = ctx.artifacts["token_weights"]
        bar.set_postfix(err=f"{rel_error:.2e}")
        log.info("block %d: rel. error %.3e in %.2fs", i, rel_error, stats["seconds"])
        blocks[i] = block.to(cfg.offload)
        fp_stream = [t.to(cfg.offload) for t in fp_next]
        q_stream = [t.to(cfg.offload) for t in q_next] if q_next is not None else None
        if checkpoint:
            elapsed = report.resumed_seconds + time.perf_counter() - start_time
            checkpoint.save_block(i, blocks[i].state_dict(), stats, fp_stream, q_stream, elapsed)
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


def _relative_error(out: list[torch.Tensor], ref: list[torch.Tensor], token_types: torch.Tensor) -> float:
    num = den = 0.0
    start = 0
    for o, r in zip(out, ref, strict=True):
        mask = valid_mask(token_types[start : start + o.shape[0]]).to(o.device)
        start += o.shape[0]
        diff = (o.float() - r.float())[mask]
        num += float(diff.pow(2).sum())
        den += float(r.float()[mask].pow(2).sum())
    return num / max(den, 1e-30)


def _reset_peak_memory(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_memory(device: str) -> int:
    """Peak accelerator memory on CUDA; peak resident set size of the process on CPU."""
    if torch.device(device).type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
