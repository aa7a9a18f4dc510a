"""Memory budgets: how many calibration rows one forward (or forward + backward) may take at once.

Attribution and the solvers run a group's compared module on ``rows = samples x copies`` inputs
(copies: QIG path points, leave-one-out perturbations, scale candidates run one after another).
Running every row at once makes peak memory grow with ``samples x path points``; at 128 samples
and 7B widths that is what ran an 80 GB GPU out of memory. Instead every caller *streams*: it
cuts the rows into chunks whose estimated working set fits a byte budget and accumulates (rows
never interact in a decoder block, and every loss here is a sum over rows, so the result is the
same up to float summation order).

The budget is ``--memory-budget`` (e.g. ``8GiB``) or, by default, a safe fraction of what the
device has free now (``torch.cuda.mem_get_info`` on CUDA, ``MemAvailable`` on CPU). The working
set per row is *estimated from the module's widths* (:func:`row_bytes`), not measured: tokens x
(every linear's input and output width, + attention scores heads x T when the module is an
attention) x element size, x 3 with autograd (the saved activations, their gradients, and the
straight-through quantizers' temporaries). Deliberately an over-estimate: a chunk that is a bit
too small costs a few more launches, one that is too large costs the run.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qigbench.errors import QigbenchError

#: the share of the device's free memory the default budget takes (the rest: allocator slack,
#: the block's recorded inputs that live beside the chunk, other processes)
SAFE_FRACTION = 0.5
#: autograd keeps each activation for the backward pass and builds its gradient
AUTOGRAD_FACTOR = 3

_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip


class MemoryBudgetError(QigbenchError, ValueError):
    """A memory budget that cannot be parsed or is too small to run anything."""


def parse_bytes(text: str | int | None) -> int | None:
    """``"8GiB"`` -> 8589934592, ``"512MB"`` -> 512000000, ``1024`` -> 1024, ``None``/``"auto"`` -> None."""
    if text is None or isinstance(text, int):
        return text
    raw = text.strip().lower().replace(" ", "")
    if raw in ("", "auto", "none"):
        return None
    match = re.fullmatch(r"([0-9]*\.?[0-9]+)([a-z]*)", raw)
    if match is None or match.group(2) not in _UNITS:
        raise MemoryBudgetError(
            f"memory budget {text!r} is not a size; write e.g. --memory-budget 8GiB "
            "(units B, KB, MB, GB, KiB, MiB, GiB)"
        )
    value = int(float(match.group(1)) * _UNITS[match.group(2)])
    if value <= 0:
        raise MemoryBudgetError(f"memory budget {text!r} must be positive, e.g. --memory-budget 8GiB")
    return value


def format_bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n}B"


def available_bytes(device: torch.device | str) -> int:
    """Memory free on ``device`` now: CUDA's free memory, or the host's ``MemAvailable``."""
    dev = torch.device(device)
    if dev.type == "cuda":
        free, _total = torch.cuda.mem_get_info(dev)
        return int(free)
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil is a dependency; /proc/meminfo is the fallback
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 4 * 2**30  # pragma: no cover - neither source: assume a small machine


def resolve_budget(budget: int | None, device: torch.device | str) -> int:
    """The explicit budget, or :data:`SAFE_FRACTION` of the device's free memory."""
    return int(budget) if budget is not None else int(SAFE_FRACTION * available_bytes(device))


def _element_size(module: nn.Module) -> int:
    for p in module.parameters():
        if p.is_floating_point():
            return int(p.element_size())
    return 4


def _attention_heads(module: nn.Module) -> int:
    """Heads of an attention module (its scores are heads x T per token), 0 for anything else."""
    config = getattr(module, "config", None)
    if not hasattr(module, "head_dim") or config is None:
        return 0
    return int(getattr(config, "num_attention_heads", 0) or 0)


def row_bytes(module: nn.Module, tokens: int, *, autograd: bool, input_width: int | None = None) -> int:
    """Estimated working set of one row (one sample at one path point / candidate) through ``module``.

    ``tokens x (input width + sum of every linear's in and out widths + heads x tokens)`` elements,
    times :data:`AUTOGRAD_FACTOR` with autograd. The sum over linears covers the widest
    intermediate (an MLP's gate/up outputs) and every activation a backward pass needs.
    """
    widths = 0
    first_in = 0
    for child in module.modules():
        in_f, out_f = getattr(child, "in_features", None), getattr(child, "out_features", None)
        if isinstance(in_f, int) and isinstance(out_f, int) and hasattr(child, "weight"):
            widths += in_f + out_f
            first_in = first_in or in_f
    widths += input_width if input_width is not None else first_in
    per_token = widths + _attention_heads(module) * tokens
    factor = AUTOGRAD_FACTOR if autograd else 1
    return max(1, tokens * per_token * _element_size(module) * factor)


def rows_per_chunk(budget: int, bytes_per_row: int, total_rows: int) -> int:
    """How many rows fit ``budget`` (at least one: a single row is the smallest unit of work)."""
    return max(1, min(total_rows, budget // max(1, bytes_per_row)))


def row_spans(batch_sizes: Sequence[int], max_rows: int) -> list[tuple[int, int]]:
    """Cut rows ``0..sum(batch_sizes)`` into spans of at most ``max_rows``, aligned to the recorded
    batches where possible (whole batches are packed together; a batch larger than ``max_rows`` is
    split into pieces)."""
    max_rows = max(1, int(max_rows))
    spans: list[tuple[int, int]] = []
    start = end = 0
    for b in batch_sizes:
        if end - start + b <= max_rows:
            end += b
            continue
        if end > start:
            spans.append((start, end))
        start = end
        while b > max_rows:
            spans.append((start, start + max_rows))
            start += max_rows
            b -= max_rows
        end = start + b
    if end > start:
        spans.append((start, end))
    return spans


def batch_sizes_of(fn: Any, total: int) -> list[int]:
    """The recorded batch sizes of a :class:`~qigbench.engine.replay.Replay` (one batch for a plain callable)."""
    sizes = getattr(fn, "batch_sizes", None)
    return list(sizes) if sizes is not None and sum(sizes) == total else [total]


def rows_of(fn: Any, start: int, stop: int, total: int) -> Any:
    """``fn`` restricted to sample rows ``start:stop``: ``fn.rows(start, stop)`` when it has recorded
    per-batch state (a Replay), else ``fn`` itself (a plain row-wise callable)."""
    if start == 0 and stop == total:
        return fn
    select = getattr(fn, "rows", None)
    return select(start, stop) if callable(select) else fn


#: how allocators word a failed allocation: CUDA / HIP / MPS ("... out of memory"), the CPU allocator
#: ("DefaultCPUAllocator: not enough memory: you tried to allocate N bytes", older "can't allocate
#: memory"), and an oversize request ("RuntimeError: can't allocate 40043211664 bytes")
_OOM_WORDS = ("out of memory", "not enough memory", "can't allocate", "cannot allocate", "failed to allocate")


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, a host MemoryError, or a RuntimeError that says an allocation failed."""
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if isinstance(exc, MemoryError) or (oom is not None and isinstance(exc, oom)):
        return True
    return isinstance(exc, RuntimeError) and any(word in str(exc).lower() for word in _OOM_WORDS)


def longest_sample(batches: Sequence[Any]) -> int:
    """Tokens of the longest calibration row (batches with ``inputs["input_ids"]``; 0 if none)."""
    lengths = [int(b.inputs["input_ids"].shape[-1]) for b in batches if "input_ids" in getattr(b, "inputs", {})]
    return max(lengths, default=0)


def length_advice(tokens: int) -> str:
    """The ``--max-length`` sentence of an out-of-memory message: a sample's attention grows with its
    length squared, so a few very long captions can need more than the whole device."""
    if tokens <= 0:
        return ""
    return (
        f" The longest calibration sample has {tokens} tokens (attention memory grows with its square): cut the "
        f"samples with --max-length {max(tokens // 2, 1)} (qigbench quantize) or shorten the longest entries of "
        "the --calib file."
    )


class CalibrationOutOfMemoryError(QigbenchError, MemoryError):
    """The device ran out of memory during calibration; the message says which option helps."""
