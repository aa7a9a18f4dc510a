"""Measure where calibration time and memory go, without touching the engine loop.

The engine reports the wall time of a whole ``calibrate()`` and of each block. Questions such as
"what fraction of QIG's calibration is attribution?" need the time spent inside one callable (a
sensitivity provider, a method hook) summed over every call of a run. :func:`time_calls` wraps an
attribute of a class or instance with a timer for the duration of a ``with`` block and restores it
afterwards, so benchmarks and users can ask that of any method without the method knowing.

On CUDA the wrapper synchronises the device around each call: kernels are launched
asynchronously, and without a sync the time would land in whichever later call waits for them.
"""

from __future__ import annotations

import functools
import resource
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from qigbench.errors import QigbenchError


class TimingError(QigbenchError):
    """A timer was asked to wrap something that is not callable."""


@dataclass
class CallTimer:
    """Total seconds and number of calls of one wrapped callable (nested calls count once).

    ``seconds`` is wall time; ``cpu_seconds`` this process's CPU time (``time.process_time``: on a
    shared machine it does not count the time other processes held the cores, so ratios of it are
    steadier than ratios of wall time; with several threads it adds theirs up)."""

    name: str
    seconds: float = 0.0
    calls: int = 0
    cpu_seconds: float = 0.0
    _depth: int = 0

    def fraction_of(self, total_seconds: float) -> float:
        """This timer's share of a total (0 when the total is not positive)."""
        return self.seconds / total_seconds if total_seconds > 0 else 0.0


def _sync(device: str | torch.device | None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def time_calls(owner: Any, attribute: str, device: str | torch.device | None = None) -> Iterator[CallTimer]:
    """Time every call of ``owner.attribute`` inside the ``with`` block.

    ``owner`` is a class (every instance is timed, e.g. ``QIGProvider`` and ``"__call__"``) or an
    instance (only that one). Recursive or re-entrant calls are counted once, at the outermost
    level, so the total never exceeds wall time. ``device``: synchronise this CUDA device around
    each call so asynchronous kernels are charged to the call that launched them.
    """
    original = owner.__dict__.get(attribute) if isinstance(owner, type) else None
    bound = getattr(owner, attribute, None)
    if bound is None or not callable(bound):
        raise TimingError(
            f"{owner!r} has no callable attribute {attribute!r}; pass the class or object that defines the "
            "method you want to time (e.g. time_calls(QIGProvider, '__call__'))"
        )
    if not isinstance(owner, type) and attribute.startswith("__"):
        raise TimingError(
            f"{attribute} is looked up on the type, so timing it on one instance would never fire; "
            f"time it on the class: time_calls({type(owner).__name__}, {attribute!r})"
        )
    timer = CallTimer(f"{getattr(owner, '__name__', type(owner).__name__)}.{attribute}")

    def timed(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if timer._depth:
            return call(*args, **kwargs)
        timer._depth += 1
        _sync(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            return call(*args, **kwargs)
        finally:
            _sync(device)
            timer.seconds += time.perf_counter() - start
            timer.cpu_seconds += time.process_time() - cpu_start
            timer.calls += 1
            timer._depth -= 1

    if isinstance(owner, type):
        # look the function up along the MRO, so an inherited method can be timed on a subclass
        func = getattr(owner, attribute)

        @functools.wraps(func)
        def method_wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            return timed(func, self, *args, **kwargs)

        setattr(owner, attribute, method_wrapper)
        try:
            yield timer
        finally:
            if original is not None:
                setattr(owner, attribute, original)
            else:
                delattr(owner, attribute)  # it was inherited: uncover the base class's again
        return

    @functools.wraps(bound)
    def instance_wrapper(*args: Any, **kwargs: Any) -> Any:
        return timed(bound, *args, **kwargs)

    had_own = attribute in getattr(owner, "__dict__", {})
    own = owner.__dict__.get(attribute) if had_own else None
    setattr(owner, attribute, instance_wrapper)
    try:
        yield timer
    finally:
        if had_own:
            setattr(owner, attribute, own)
        else:
            delattr(owner, attribute)


def parameter_bytes(model: nn.Module) -> int:
    """Bytes held by a model's parameters and buffers (each tensor storage counted once, so tied
    embeddings are not double-counted)."""
    seen: set[int] = set()
    total = 0
    for tensor in [*model.parameters(), *model.buffers()]:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key in seen:
            continue
        seen.add(key)
        total += storage.nbytes()
    return total


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (since the last :func:`reset_peak_rss`, where supported).

    Linux: ``VmHWM`` from ``/proc/self/status`` (resettable); elsewhere ``ru_maxrss`` (KiB on Linux,
    bytes on macOS), the peak since the process started.
    """
    hwm = _status_kib("VmHWM")
    if hwm is not None:
        return hwm * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def reset_peak_rss() -> bool:
    """Reset the peak RSS to the current RSS (Linux >= 4.0: ``echo 5 > /proc/self/clear_refs``).

    Lets one process measure the peak of a phase (calibration) apart from an earlier one (model
    loading, whose transient copies can exceed it). Returns False where the kernel does not allow it.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


def current_rss_bytes() -> int:
    """Resident set size now (Linux ``VmRSS``; falls back to the peak elsewhere)."""
    rss = _status_kib("VmRSS")
    return rss * 1024 if rss is not None else peak_rss_bytes()


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return None
