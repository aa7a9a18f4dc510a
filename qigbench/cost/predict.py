"""From a calibration measured on a few blocks, predict the whole model's time and peak memory.

The engine's work splits into parts that scale differently with depth:

- **decoder blocks**: every block does the same work (same shape, same number of tokens), so the
  block loop costs ``depth x`` the mean measured block time;
- **method prepare** (MBQ's caption-loss forward/backward through the whole model): a fixed part
  (embedding, vision tower, lm_head) plus a per-block part, fitted by least squares on the prepare
  pass timed at >= 3 depths (k, k - 1, k - 2 blocks of the built model; :mod:`qigbench.cost.fit`).
  Nothing is clamped: a negative slope is an error, a fit through two depths, a negative fixed part
  or a large residual is a warning on the prediction; with one depth, all of it is charged per
  block (an upper bound, also a warning);
- **capture** (embedding, vision tower, block-0 inputs): independent of the decoder depth;
- **vision tower layers**: when the tower was built shallower than the real one, the time spent
  in its layers (measured by hooks, wherever it ran) is scaled by ``real / built`` layers;
- everything else the run did (propagation bookkeeping) is charged as a fixed part.

Peak memory: on the device the engine moves one block at a time, so the block phase is flat in
depth; what grows is whatever holds every block at once: the whole model held in host memory
(``resident_bytes_per_block``: a block's parameters when the run's device *is* the host) and a
prepare pass that puts the whole model on the device (again a least-squares line over the measured
depths). The predicted peak is the largest phase.

Times are in the measurement's clock: wall seconds, or on a shared CPU this process's CPU seconds
(``Measurement.clock``), which other processes' load leaves alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qigbench.cost.errors import CostModelError
from qigbench.cost.fit import LineFit, fit_line

__all__ = ["CostModelError", "Measurement", "Phase", "Prediction", "predict"]


@dataclass(frozen=True)
class Phase:
    """Wall seconds and peak bytes of one phase; ``vision_seconds`` spent inside vision-tower layers."""

    seconds: float = 0.0
    peak_bytes: int = 0
    vision_seconds: float = 0.0
    #: bytes in use when the phase began (RSS on the host, allocated on CUDA); 0: not recorded
    start_bytes: int = 0


@dataclass(frozen=True)
class Measurement:
    """What one calibration on a reduced-depth real-shape model measured."""

    blocks: int  # decoder blocks built and calibrated (k)
    block_seconds: tuple[float, ...]  # per block, as the engine reported them
    block_phase_peak_bytes: int  # peak while the block loop ran
    capture: Phase
    prepare: Phase  # the method's prepare at k blocks (zeros if it has none)
    #: the same at shallower depths, ``(depth, phase)`` (empty: not measured)
    prepare_at: tuple[tuple[int, Phase], ...]
    total_seconds: float  # the engine's whole calibrate()
    resident_bytes_per_block: int  # host bytes each further block adds for the whole run (0 on an accelerator)
    block_bytes: int  # parameter bytes of one decoder block
    vision_layers_built: int = 0
    vision_layer_bytes: int = 0  # parameter bytes of one vision-tower layer
    vision_resident: bool = False  # whether the vision tower's layers live in the measured memory all run
    clock: str = "wall"  # "wall" (perf_counter) or "cpu" (this process's CPU time)
    #: the process's first prepare pass, ``(depth, phase)``, run before the others: it pays the warm-up
    #: (first kernels and allocations) that a real run pays once; None: not measured
    prepare_warmup: tuple[int, Phase] | None = None


@dataclass(frozen=True)
class Prediction:
    depth: int
    vision_layers: int
    seconds: float
    peak_bytes: int
    parts: dict[str, float] = field(default_factory=dict)  # seconds by part, summing to ``seconds``
    peaks: dict[str, int] = field(default_factory=dict)  # bytes by phase; ``peak_bytes`` is their max
    #: what the prediction rests on that a reader must see (an unchecked or implausible fit)
    warnings: tuple[str, ...] = ()
    #: the fitted prepare lines (time, memory), when the method has a prepare pass
    prepare_fit: LineFit | None = None
    prepare_memory_fit: LineFit | None = None

    @property
    def hours(self) -> float:
        return self.seconds / 3600.0


@dataclass(frozen=True)
class PrepareModel:
    """MBQ-style prepare pass as a function of depth: a time line, a peak line and the warm-up."""

    time: LineFit | None
    #: of the passes' peaks above their start (``relative``) or of the absolute peaks
    memory: LineFit | None
    relative: bool = False
    #: bytes the relative memory line sits on: in use when the process's first prepare pass began
    memory_base: float = 0.0
    #: what the process's first pass took beyond the warm line at its depth (charged once)
    warmup: float = 0.0
    warnings: tuple[str, ...] = ()

    def peak_at(self, depth: int) -> float:
        assert self.memory is not None
        return self.memory_base + self.memory.at(depth)


def prepare_model(m: Measurement) -> PrepareModel:
    """Fit the prepare pass over the measured depths (see the module docstring)."""
    if not m.prepare.seconds:
        return PrepareModel(None, None)
    first = m.prepare_warmup
    points = sorted([(m.blocks, m.prepare), *m.prepare_at], key=lambda p: p[0])
    depths = [d for d, _ in points]
    unit = "CPU s" if m.clock == "cpu" else "s"
    if len(set(depths)) < 2:
        warning = (f"prepare measured at one depth ({m.blocks} blocks): all of it is charged per block (an upper "
                   "bound); build >= 3 blocks to fit its fixed and per-block parts")
        seconds = m.prepare.seconds - m.prepare.vision_seconds
        time_fit = LineFit("prepare time", 0.0, seconds / m.blocks, tuple(depths), (seconds,))
        # memory: a block's bytes per block on a device (the model moves there); on the host the resident
        # blocks are counted apart (host_extra in predict)
        slope = 0.0 if m.resident_bytes_per_block else float(m.block_bytes)
        peak = float(m.prepare.peak_bytes)
        memory_fit = LineFit("prepare peak", peak - m.blocks * slope, slope, tuple(depths), (peak,))
        return PrepareModel(time_fit, memory_fit, warnings=(warning,))
    time_fit = fit_line(depths, [p.seconds - p.vision_seconds for _, p in points], "prepare time", unit)
    warnings = list(time_fit.warnings)
    warmup = 0.0
    if first is not None:
        warm = time_fit.at(first[0])
        warmup = first[1].seconds - first[1].vision_seconds - warm
        if warmup < -0.1 * warm:
            warnings.append(f"prepare time: the process's first pass ({first[1].seconds:.4g} {unit} at depth "
                            f"{first[0]}) was faster than the warm line there ({warm:.4g}): noisy timings; kept")
    # each pass's peak above where it began: memory an earlier pass left to the allocator then cancels
    relative = first is not None and all(p.start_bytes for _, p in [first, *points])
    values = [float(p.peak_bytes - (p.start_bytes if relative else 0)) for _, p in points]
    memory_fit = fit_line(depths, values, "prepare peak", "bytes", negative="warn")
    warnings += memory_fit.warnings
    base = float(first[1].start_bytes) if relative and first is not None else 0.0
    return PrepareModel(time_fit, memory_fit, relative, base, warmup, tuple(warnings))


def predict(m: Measurement, depth: int, vision_layers: int = 0) -> Prediction:
    """The whole model's calibration time and peak memory at ``depth`` blocks and a vision tower of
    ``vision_layers`` layers (0 or the built depth: no vision scaling)."""
    if m.blocks < 1 or not m.block_seconds:
        raise CostModelError("the measurement has no calibrated block; run at least one block (--blocks 1)")
    if depth < m.blocks:
        raise CostModelError(f"cannot predict {depth} blocks from a run of {m.blocks}: predict the real depth")
    built_v = m.vision_layers_built
    vision_scale = vision_layers / built_v if built_v and vision_layers else 1.0
    k = m.blocks

    prep = prepare_model(m)
    time_fit, memory_fit, warnings = prep.time, prep.memory, list(prep.warnings)
    # block 0 apart (it pays the block loop's warm-up, and in W-A formats its first group has x == x^q)
    first_block, rest = m.block_seconds[0], m.block_seconds[1:]
    block_time = first_block + (depth - 1) * (sum(rest) / len(rest) if rest else first_block)
    other = m.total_seconds - m.prepare.seconds - m.capture.seconds - sum(m.block_seconds)
    if other < -0.02 * m.total_seconds:
        warnings.append(f"the timed phases add up to {-other:.3g} s more than the whole calibrate() "
                        f"({m.total_seconds:.3g} s): the phase timers overlap or the clocks disagree")
    parts = {
        "blocks": block_time,
        "prepare_per_block": depth * time_fit.slope if time_fit else 0.0,
        "prepare_fixed": time_fit.fixed if time_fit else 0.0,
        "prepare_warmup": prep.warmup,
        "capture": m.capture.seconds - m.capture.vision_seconds,
        "vision": (m.capture.vision_seconds + m.prepare.vision_seconds) * vision_scale,
        "other": other,
    }

    extra_blocks = depth - k
    extra_vision = max(vision_layers - built_v, 0) * m.vision_layer_bytes if built_v and vision_layers else 0
    host_extra = extra_blocks * m.resident_bytes_per_block + (extra_vision if m.vision_resident else 0)
    peaks = {
        "capture": m.capture.peak_bytes + host_extra + (0 if m.vision_resident else extra_vision),
        "blocks": m.block_phase_peak_bytes + host_extra,
    }
    if memory_fit is not None and m.prepare.peak_bytes:
        # on the device, the truncated model's prepare holds only its own blocks, so the line's slope has a
        # block's bytes in it; on the host every built block stays resident whatever the depth prepared, so
        # the blocks beyond the built ones come in as host_extra (0 on a device)
        peaks["prepare"] = int(prep.peak_at(depth)) + host_extra + (0 if m.vision_resident else extra_vision)
    return Prediction(
        depth=depth,
        vision_layers=vision_layers or built_v,
        seconds=sum(parts.values()),
        peak_bytes=max(peaks.values()),
        parts=parts,
        peaks=peaks,
        warnings=tuple(warnings),
        prepare_fit=time_fit,
        prepare_memory_fit=memory_fit,
    )
