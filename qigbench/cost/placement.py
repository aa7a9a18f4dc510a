"""Peak memory per device of a multi-device placement (``--devices``), before renting the devices.

"Does InternVL2-26B fit on four 24 GB cards?" The engine's placement
(:mod:`qigbench.engine.placement`) keeps each stage of the decoder resident on its device, the
modules outside the decoder on the first one, and the propagation streams on the device of the
stage being calibrated. So the peak of device ``d`` is

    weights(d) + max(streams + block working set,   the block loop (while d's stage runs)
                     prepare activations(d))        the pipelined gradient pre-pass (MBQ, TLQ)

* **weights** -- exact: the real checkpoint's parameter counts per block and outside the decoder
  (the full-depth, full-width model built on the meta device, no memory), in the target dtype,
  split with the engine's own :func:`~qigbench.engine.placement.plan_stages`;
* **streams** -- exact: ``samples x tokens x hidden`` per kept stream (fp; and the quantized one
  when the method propagates it), tokens as the calibration set tokenised in the measured run;
* **block working set** -- *measured*: the largest rise in memory while one unit of the reduced
  run was calibrated (recorded inputs, the block's outputs, candidates, attribution chunks,
  Hessians), taken by :class:`UnitProbe` over :func:`qigbench.cost.measure.measure`. A run on a
  narrowed shape (``--width-divisor D``) is scaled to the real width: activations x D, GPTQ's
  Hessians (float64 sum + float32 copy of the widest input) recomputed at the real width. Measured
  at full width (e.g. on the GPU: ``--blocks 2 --vision-layers 1``) nothing is scaled;
* **prepare activations** -- estimated with the engine's own row model
  (:func:`qigbench.memory.row_bytes`, x3 with autograd) for one batch through the stage's blocks,
  plus the logits' cross-entropy on the first device.

Every number printed says which of these it is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from qigbench.cost.probes import current_rss_bytes
from qigbench.engine import unit as engine_unit
from qigbench.engine.placement import plan_stages
from qigbench.errors import QigbenchError
from qigbench.memory import row_bytes
from qigbench.models.shapes.build import meta_model, plan_build
from qigbench.models.shapes.data import ShapeSpec

GIB = 1024**3
#: methods whose prepare runs the whole model forward and backward (the gradient pre-pass)
GRADIENT_PREPARE = ("mbq", "tlq")
GPTQ_FAMILY = ("gptq", "qig-gptq")


class PlacementCostError(QigbenchError, ValueError):
    """A placement the cost model cannot predict (fewer blocks than devices, no measured unit)."""


# ----------------------------------------------------------------------------------- measuring
@dataclass
class UnitMemory:
    """Per unit of the measured run: memory when it started and the most it reached (bytes)."""

    starts: list[int] = field(default_factory=list)
    peaks: list[int] = field(default_factory=list)

    @property
    def working(self) -> int:
        """The largest rise above a unit's starting memory."""
        return max((p - s for s, p in zip(self.starts, self.peaks, strict=True)), default=0)


def _memory_now(device: str) -> int:
    if torch.device(device).type == "cuda":
        return int(torch.cuda.memory_allocated(device))
    return current_rss_bytes()


@contextmanager
def UnitProbe(device: str, interval: float = 0.002) -> Iterator[UnitMemory]:
    """While inside, every unit of every engine run records its memory at start and its peak
    (sampled every ``interval`` seconds by a thread: no peak counter is reset, so the other
    measurements of the same run -- :mod:`qigbench.cost.measure`'s phases -- are untouched)."""
    found = UnitMemory()
    original = engine_unit.UnitContext.__iter__

    def probed(self: Any) -> Iterator[Any]:
        start = _memory_now(device)
        peak = [start]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], _memory_now(device))
                time.sleep(interval)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            yield from original(self)
        finally:
            stop.set()
            sampler.join()
            found.starts.append(start)
            found.peaks.append(max(peak[0], _memory_now(device)))

    engine_unit.UnitContext.__iter__ = probed  # type: ignore[method-assign]
    try:
        yield found
    finally:
        engine_unit.UnitContext.__iter__ = original  # type: ignore[method-assign]


# ----------------------------------------------------------------------------------- predicting
@dataclass(frozen=True)
class RealShape:
    """The real checkpoint's sizes that a placement's memory depends on."""

    block_params: tuple[int, ...]  # parameters per decoder block
    outside_params: int  # embeddings, vision tower, projector, head, norms
    hidden: int
    widest_input: int  # the widest linear input of a block (GPTQ's largest Hessian)
    vocab: int
    block_row_elements: int  # memory.row_bytes of one block per token (elements, no autograd), at 1 token
    block_attention_heads: int

    @classmethod
    def of(cls, spec: ShapeSpec) -> RealShape:
        from qigbench.models.registry import family_for, get_blocks

        plan = plan_build(spec.name, spec.layers, vision_layers=spec.vision_layers or None)
        model = meta_model(plan)
        family = family_for(model)
        blocks = get_blocks(model, family)
        per_block = tuple(sum(p.numel() for p in b.parameters()) for b in blocks)
        total = sum(p.numel() for p in model.parameters())
        widest = max(m.in_features for m in blocks[0].modules() if isinstance(m, torch.nn.Linear))
        text = dict(plan.text)
        one_token = row_bytes(blocks[0], 1, autograd=False) // 4  # float32 elements at one token
        heads = int(text.get("num_attention_heads", 0))
        return cls(per_block, total - sum(per_block), int(text["hidden_size"]), int(widest),
                   int(text["vocab_size"]), int(one_token - heads), heads)


@dataclass(frozen=True)
class DeviceMemory:
    device: str
    blocks: tuple[int, int]  # first, last (inclusive)
    weights: int
    streams: int
    block_work: int
    prepare: int
    capacity: int | None

    @property
    def peak(self) -> int:
        return self.weights + max(self.streams + self.block_work, self.prepare)

    @property
    def fits(self) -> bool | None:
        return None if self.capacity is None else self.peak <= self.capacity


@dataclass(frozen=True)
class PlacementPrediction:
    devices: tuple[DeviceMemory, ...]
    notes: tuple[str, ...]

    @property
    def fits(self) -> bool | None:
        flags = [d.fits for d in self.devices]
        return None if any(f is None for f in flags) else all(flags)  # type: ignore[return-value]


def predict_placement(
    spec: ShapeSpec,
    devices: Sequence[str],
    *,
    method: str,
    samples: int,
    tokens: int,
    batch_size: int,
    streams: int,
    measured_working: int,
    measured_dtype_bytes: int,
    width_divisor: int,
    measured_samples: int | None = None,
    capacity: int | None = None,
    dtype_bytes: int = 2,
    real: RealShape | None = None,
) -> PlacementPrediction:
    """Peak memory of each device when ``spec`` is calibrated with ``method`` split over ``devices``
    (see the module docstring for what each term is and where it comes from)."""
    real = real or RealShape.of(spec)
    n_blocks = len(real.block_params)
    if len(devices) > n_blocks:
        raise PlacementCostError(f"{spec.name} has {n_blocks} decoder blocks: at most {n_blocks} devices")
    stages = plan_stages([p * dtype_bytes for p in real.block_params], len(devices), real.outside_params * dtype_bytes)
    notes = []
    measured_samples = measured_samples or samples
    built = real.widest_input // max(width_divisor, 1)
    hessian = built * built * (8 + 4) if method in GPTQ_FAMILY else 0  # float64 sum + float32 copy
    activations = max(measured_working - hessian, 0)
    work = activations * width_divisor * samples // measured_samples + (real.widest_input**2 * 12 if hessian else 0)
    scaled = []
    if width_divisor > 1:
        square = ", Hessians x its square" if hessian else ""
        scaled.append(f"width 1/{width_divisor} -> 1 (x{width_divisor}{square})")
    if samples != measured_samples:
        scaled.append(f"{measured_samples} -> {samples} samples (activations x{samples / measured_samples:g})")
    notes.append("block working set measured" + (f" and scaled: {'; '.join(scaled)}" if scaled else
                                                 " at the real width and sample count"))
    notes.append(f"weights and streams exact, at {dtype_bytes} bytes per element; the working set at the measured "
                 f"{measured_dtype_bytes} bytes (the solvers compute in float32)")
    stream_bytes = streams * samples * tokens * real.hidden * dtype_bytes
    gradient = method in GRADIENT_PREPARE
    if gradient:
        notes.append(f"{method}'s gradient pre-pass: one batch of {batch_size} forward and backward through each "
                     "stage (engine row model x3 for autograd; logits' cross-entropy on the first device)")
    out = []
    for k, (device, (a, b)) in enumerate(zip(devices, stages, strict=True)):
        weights = sum(real.block_params[a:b]) * dtype_bytes + (real.outside_params * dtype_bytes if k == 0 else 0)
        prepare = 0
        if gradient:
            per_block = batch_size * tokens * (real.block_row_elements + real.block_attention_heads * tokens)
            prepare = per_block * (b - a) * dtype_bytes * 3
            if k == 0:
                prepare += batch_size * tokens * real.vocab * 4 * 3
        out.append(DeviceMemory(device, (a, b - 1), weights, stream_bytes, work, prepare, capacity))
    return PlacementPrediction(tuple(out), tuple(notes))


def format_placement(label: str, spec: ShapeSpec, prediction: PlacementPrediction) -> str:
    cap = prediction.devices[0].capacity
    n_blocks = prediction.devices[-1].blocks[1] + 1
    each = "" if cap is None else f", {cap / GIB:.0f} GiB each"
    lines = [f"{label}: {spec.name} ({n_blocks} blocks) on {len(prediction.devices)} devices{each}", "",
             "| device | blocks | weights GiB | streams GiB | block work GiB | prepare GiB | peak GiB | fits |",
             "|---|---|---|---|---|---|---|---|"]
    for d in prediction.devices:
        fits = "—" if d.fits is None else ("yes" if d.fits else "**no**")
        lines.append(f"| {d.device} | {d.blocks[0]}-{d.blocks[1]} | {d.weights / GIB:.1f} | {d.streams / GIB:.1f} | "
                     f"{d.block_work / GIB:.1f} | {d.prepare / GIB:.1f} | {d.peak / GIB:.1f} | {fits} |")
    worst = max(prediction.devices, key=lambda d: d.peak)
    if worst.capacity is not None:
        verdict = "fits" if prediction.fits else "does not fit"
        lines += ["", f"{verdict}: the fullest device is {worst.device} (blocks {worst.blocks[0]}-{worst.blocks[1]}) "
                  f"at {worst.peak / GIB:.1f} GiB of {worst.capacity / GIB:.0f} GiB"]
    lines += ["", *(f"- {n}" for n in prediction.notes)]
    return "\n".join(lines)
