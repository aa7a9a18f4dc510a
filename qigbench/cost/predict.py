"""From a calibration measured on a few blocks, predict the whole model's time and peak memory.

The engine's work splits into parts that scale differently with depth:

- **decoder blocks**: every block does the same work (same shape, same number of tokens), so the
  block loop costs ``depth x`` the mean measured block time;
- **method prepare** (MBQ's caption-loss forward/backward through the whole model): a fixed part
  (embedding, vision tower, lm_head) plus a per-block part. Both are read from two measurements,
  at ``k`` and ``k - 1`` blocks (a straight line through two points); with one block only, all of
  it is charged per block (an upper bound);
- **capture** (embedding, vision tower, block-0 inputs): independent of the decoder depth;
- **vision tower layers**: when the tower was built shallower than the real one, the time spent
  in its layers (measured by hooks, wherever it ran) is scaled by ``real / built`` layers;
- everything else the run did (propagation bookkeeping) is charged as a fixed part.

Peak memory: on the device the engine moves one block at a time, so the block phase is flat in
depth; what grows is whatever holds every block at once: the whole model held in host memory
(``resident_bytes_per_block``: a block's parameters when the run's device *is* the host) and a
prepare pass that puts the whole model on the device (again a straight line through ``k - 1`` and
``k``). The predicted peak is the largest phase.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qigbench.errors import QigbenchError


class CostModelError(QigbenchError, ValueError):
    """A measurement cannot support a prediction (no blocks measured, a depth below the measured one)."""


@dataclass(frozen=True)
class Phase:
    """Wall seconds and peak bytes of one phase; ``vision_seconds`` spent inside vision-tower layers."""

    seconds: float = 0.0
    peak_bytes: int = 0
    vision_seconds: float = 0.0


@dataclass(frozen=True)
class Measurement:
    """What one calibration on a reduced-depth real-shape model measured."""

    blocks: int  # decoder blocks built and calibrated (k)
    block_seconds: tuple[float, ...]  # per block, as the engine reported them
    block_phase_peak_bytes: int  # peak while the block loop ran
    capture: Phase
    prepare: Phase  # the method's prepare at k blocks (zeros if it has none)
    prepare_shallower: Phase | None  # the same at k - 1 blocks (None: not measured)
    total_seconds: float  # the engine's whole calibrate()
    resident_bytes_per_block: int  # host bytes each further block adds for the whole run (0 on an accelerator)
    block_bytes: int  # parameter bytes of one decoder block
    vision_layers_built: int = 0
    vision_layer_bytes: int = 0  # parameter bytes of one vision-tower layer
    vision_resident: bool = False  # whether the vision tower's layers live in the measured memory all run


@dataclass(frozen=True)
class Prediction:
    depth: int
    vision_layers: int
    seconds: float
    peak_bytes: int
    parts: dict[str, float] = field(default_factory=dict)  # seconds by part, summing to ``seconds``
    peaks: dict[str, int] = field(default_factory=dict)  # bytes by phase; ``peak_bytes`` is their max

    @property
    def hours(self) -> float:
        return self.seconds / 3600.0


def _line(at_k: float, at_k1: float | None, k: int, fallback_slope: float) -> tuple[float, float]:
    """(fixed, per-block) of a quantity measured at k (and k - 1) blocks; without k - 1, ``fallback_slope``."""
    slope = max(at_k - at_k1, 0.0) if at_k1 is not None else fallback_slope
    fixed = max(at_k - k * slope, 0.0)
    return fixed, slope


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

    prep_k1 = m.prepare_shallower
    prep_plain = m.prepare.seconds - m.prepare.vision_seconds
    prep_plain_k1 = prep_k1.seconds - prep_k1.vision_seconds if prep_k1 is not None else None
    prep_fixed, prep_slope = _line(prep_plain, prep_plain_k1, k, prep_plain / k)
    block_mean = sum(m.block_seconds) / len(m.block_seconds)
    other = max(m.total_seconds - m.prepare.seconds - m.capture.seconds - sum(m.block_seconds), 0.0)
    parts = {
        "blocks": depth * block_mean,
        "prepare_per_block": depth * prep_slope,
        "prepare_fixed": prep_fixed,
        "capture": m.capture.seconds - m.capture.vision_seconds,
        "vision": (m.capture.vision_seconds + m.prepare.vision_seconds) * vision_scale,
        "other": other,
    }

    extra_blocks = depth - k
    extra_vision = max(vision_layers - built_v, 0) * m.vision_layer_bytes if built_v and vision_layers else 0
    host_extra = extra_blocks * m.resident_bytes_per_block + (extra_vision if m.vision_resident else 0)
    prep_mem_k1 = float(prep_k1.peak_bytes) if prep_k1 is not None and m.prepare.peak_bytes else None
    mem_fixed, mem_slope = _line(float(m.prepare.peak_bytes), prep_mem_k1, k, float(m.block_bytes))
    peaks = {
        "capture": m.capture.peak_bytes + host_extra + (0 if m.vision_resident else extra_vision),
        "blocks": m.block_phase_peak_bytes + host_extra,
    }
    if m.prepare.peak_bytes:
        # prepare holds the whole model wherever it runs: its line already contains the resident blocks
        peaks["prepare"] = int(mem_fixed + depth * mem_slope) + extra_vision
    return Prediction(
        depth=depth,
        vision_layers=vision_layers or built_v,
        seconds=sum(parts.values()),
        peak_bytes=max(peaks.values()),
        parts=parts,
        peaks=peaks,
    )
