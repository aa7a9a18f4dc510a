"""Run one method on a reduced-depth real-shape model and measure what :mod:`predict` needs.

The run goes through the real pipeline pieces (``calibration_batches``, ``engine.calibrate``); the
phases are measured from outside, by wrapping the method's ``prepare``, its ``quantize_unit`` (each
block's time) and the engine's capture for the duration of the run and by hooks on the vision
tower's layers, so the engine loop itself knows nothing about cost measurement.

A method with a prepare pass (MBQ's model-level gradients) has it timed at ``prepare_depths``
depths (k, k - 1, ... blocks of the built model, default 3) so its per-block part is a
least-squares fit (:mod:`qigbench.cost.fit`). ``clock="cpu"`` times everything with this
process's CPU time instead of the wall clock: on a shared machine, steadier.
"""

from __future__ import annotations

import functools
import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from torch import nn

import qigbench.engine.run as engine_run
from qigbench.cost.isolated import materialise_
from qigbench.cost.predict import Measurement, Phase
from qigbench.cost.probes import current_rss_bytes, parameter_bytes, peak_rss_bytes, reset_peak_rss
from qigbench.data.defaults import default_calibration
from qigbench.engine.collate import unify_lengths
from qigbench.engine.method import Method, get_method
from qigbench.engine.run import CalibrationReport, EngineConfig, RunContext, calibrate
from qigbench.models.loading import LoadedModel, load_model
from qigbench.models.registry import get_blocks
from qigbench.models.shapes.alias import ShapeRequest
from qigbench.models.shapes.data import SHAPES, ShapeSpec
from qigbench.pipeline import QuantizeRequest, calibration_batches


@dataclass(frozen=True)
class CostRequest:
    shape: ShapeRequest  # the real shape and how much of it to build (layers = blocks measured)
    method: str
    options: tuple[tuple[str, str], ...] = ()
    format: str = "W3A16"
    samples: int = 128
    batch_size: int = 4
    image_size: int = 448  # synthetic calibration images: the real models' native tile
    device: str = "cpu"
    dtype: str = "auto"
    seed: int = 0
    cache_dir: str | None = None
    progress: bool = True
    #: bytes a streamed chunk may take (None: a safe share of free memory), see qigbench.memory
    memory_budget: int | None = None
    #: depths the prepare pass is timed at (k, k - 1, ...; capped at k): >= 3 to fit and check its line.
    #: Before them, one more pass at depth 1 measures the warm-up a first pass pays.
    prepare_depths: int = 3
    #: "wall" (perf_counter, synchronised on CUDA) or "cpu" (this process's CPU time; on a shared CPU)
    clock: Literal["wall", "cpu"] = "wall"

    @property
    def spec(self) -> ShapeSpec:
        return SHAPES[self.shape.name]


@dataclass
class MeasuredRun:
    request: CostRequest
    measurement: Measurement
    report: CalibrationReport


def clock_of(name: str) -> Callable[[], float]:
    """The timer behind ``CostRequest.clock``."""
    if name == "cpu":
        return time.process_time
    if name == "wall":
        return time.perf_counter
    raise ValueError(f"clock={name!r}; choose wall or cpu")


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        reset_peak_rss()


def _peak(device: str) -> int:
    if torch.device(device).type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return peak_rss_bytes()


def _current(device: str) -> int:
    if torch.device(device).type == "cuda":
        return int(torch.cuda.memory_allocated(device))
    return current_rss_bytes()


class VisionLayerTimer:
    """Seconds spent inside the vision tower's repeated layers, per phase (hooks, synchronised on CUDA)."""

    def __init__(self, loaded: LoadedModel, built_layers: int, device: str,
                 clock: Callable[[], float] = time.perf_counter) -> None:  # fmt: skip
        self.device, self.clock = device, clock
        self.phase = "other"
        self.seconds: dict[str, float] = {}
        self.layer_bytes = 0
        self._start: list[float] = []
        self._handles: list[Any] = []
        layers = _vision_layers(loaded, built_layers)
        if layers is None:
            return
        self.layer_bytes = parameter_bytes(layers[0])
        for layer in layers:
            self._handles.append(layer.register_forward_pre_hook(self._enter))
            self._handles.append(layer.register_forward_hook(self._leave))

    def _enter(self, *_: Any) -> None:
        _sync(self.device)
        self._start.append(self.clock())

    def _leave(self, *_: Any) -> None:
        _sync(self.device)
        self.seconds[self.phase] = self.seconds.get(self.phase, 0.0) + self.clock() - self._start.pop()

    def take(self, phase: str) -> float:
        return self.seconds.pop(phase, 0.0)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def _vision_layers(loaded: LoadedModel, built_layers: int) -> nn.ModuleList | None:
    """The vision tower's layer list: its largest ModuleList with ``built_layers`` entries."""
    if not loaded.family.vision or not built_layers:
        return None
    tower = loaded.model.get_submodule(loaded.family.vision[0])
    lists = [m for m in tower.modules() if isinstance(m, nn.ModuleList) and len(m) == built_layers]
    return max(lists, key=parameter_bytes, default=None)


class _Phases:
    def __init__(self, device: str, vision: VisionLayerTimer, clock: Callable[[], float]) -> None:
        self.device, self.vision, self.clock = device, vision, clock
        self.measured: dict[str, Phase] = {}

    def run(self, name: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        _sync(self.device)
        _reset_peak(self.device)
        start_bytes = _current(self.device)
        self.vision.phase = name
        start = self.clock()
        try:
            return call(*args, **kwargs)
        finally:
            _sync(self.device)
            seconds = self.clock() - start
            self.vision.phase = "other"
            self.measured[name] = Phase(seconds, _peak(self.device), self.vision.take(name), start_bytes)
            _reset_peak(self.device)  # the next phase's peak starts from here

    def wrap(self, name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        return lambda *args, **kwargs: self.run(name, call, *args, **kwargs)


@contextmanager
def _replaced(owner: Any, attribute: str, value: Any) -> Iterator[None]:
    had_own = attribute in vars(owner)
    original = vars(owner).get(attribute)
    setattr(owner, attribute, value)
    try:
        yield
    finally:
        if had_own:
            setattr(owner, attribute, original)
        else:
            delattr(owner, attribute)


def _has_prepare(method: Method) -> bool:
    return type(method).prepare is not Method.prepare


def _prepare_with_blocks(loaded: LoadedModel, n: int, run: Callable[[], None]) -> None:
    """Run ``run()`` with the decoder truncated to its first ``n`` blocks (restored afterwards)."""
    parent_path, _, name = loaded.family.blocks.rpartition(".")
    parent = loaded.model.get_submodule(parent_path)
    blocks = get_blocks(loaded.model, loaded.family)
    setattr(parent, name, nn.ModuleList(list(blocks)[:n]))
    try:
        run()
    finally:
        setattr(parent, name, blocks)


def measure(request: CostRequest) -> MeasuredRun:
    """Build (once) the reduced real-shape model, calibrate it with the method, measure every phase."""
    quantize_request = QuantizeRequest(
        model="", method=request.method, format=request.format, options=request.options, samples=request.samples,
        seed=request.seed, batch_size=request.batch_size, device=request.device, dtype=request.dtype,
        cache_dir=request.cache_dir, progress=request.progress,
    )
    dtype = quantize_request.torch_dtype()
    dtype_name = str(dtype).removeprefix("torch.")
    folder = replace(request.shape, dtype=dtype_name).build(request.cache_dir)
    loaded = load_model(folder, dtype=dtype, device="cpu")
    calib = None
    if loaded.family.multimodal:
        n, size = max(128, request.samples), request.image_size
        calib = str(default_calibration(loaded, request.cache_dir, n=n, seed=request.seed, image_size=size))
    quantize_request = replace(quantize_request, model=str(folder), calib=calib)
    method = get_method(request.method, dict(request.options))
    batches, _ = calibration_batches(quantize_request, loaded, method)
    if torch.device(request.device).type == "cpu":
        # weights out of their file mapping: otherwise the first pass pages the model in, and host memory
        # at the start of a phase depends on which passes ran before it
        materialise_(loaded.model)
        gc.collect()
    fmt = quantize_request.quant_format
    config = EngineConfig(device=request.device, progress=request.progress, memory_budget=request.memory_budget)
    blocks = get_blocks(loaded.model, loaded.family)
    k = len(blocks)
    block_bytes = parameter_bytes(blocks[0])
    built_vision = request.shape.resolved_vision_layers() or 0
    clock = clock_of(request.clock)
    vision = VisionLayerTimer(loaded, built_vision, request.device, clock)
    phases = _Phases(request.device, vision, clock)
    block_seconds: list[float] = []
    quantize_unit = method.quantize_unit

    def timed_unit(ctx: Any) -> None:
        _sync(request.device)
        start = clock()
        quantize_unit(ctx)
        _sync(request.device)
        block_seconds.extend([(clock() - start) / len(ctx.unit)] * len(ctx.unit))

    try:
        shallower: list[tuple[int, Phase]] = []
        warmup: tuple[int, Phase] | None = None
        if _has_prepare(method) and k > 1 and request.prepare_depths > 1:
            run = RunContext(loaded.model, loaded.family, fmt, unify_lengths(list(batches)), config)
            # the first pass (depth 1) pays the process's warm-up (first kernels, allocations): kept apart, the
            # predictor charges its excess over the warm line once
            fit_depths = list(range(k - 1, max(k - request.prepare_depths, 0), -1))
            for depth in [1, *fit_depths]:
                twin = get_method(request.method, dict(request.options))
                _prepare_with_blocks(loaded, depth, functools.partial(phases.run, "prepare", twin.prepare, run))
                shallower.append((depth, phases.measured.pop("prepare")))
            warmup = shallower.pop(0)
        prepare = phases.wrap("prepare", method.prepare) if _has_prepare(method) else method.prepare
        capture = phases.wrap("capture", engine_run.capture_block_inputs)
        with (
            _replaced(method, "prepare", prepare),
            _replaced(method, "quantize_unit", timed_unit),
            _replaced(engine_run, "capture_block_inputs", capture),
        ):
            fingerprint = quantize_request.fingerprint()
            _sync(request.device)
            start = clock()
            report = calibrate(loaded.model, loaded.family, batches, method, fmt, config, fingerprint)
            _sync(request.device)
            total = clock() - start
        block_phase_peak = _peak(request.device)
    finally:
        vision.remove()
    on_host = torch.device(request.device).type == "cpu"
    measurement = Measurement(
        blocks=k,
        block_seconds=tuple(block_seconds),
        block_phase_peak_bytes=block_phase_peak,
        capture=phases.measured.get("capture", Phase()),
        prepare=phases.measured.get("prepare", Phase()),
        prepare_at=tuple(shallower),
        prepare_warmup=warmup,
        total_seconds=total,
        resident_bytes_per_block=block_bytes if on_host else 0,
        block_bytes=block_bytes,
        vision_layers_built=built_vision,
        vision_layer_bytes=vision.layer_bytes,
        vision_resident=on_host,
        clock=request.clock,
    )
    return MeasuredRun(request=request, measurement=measurement, report=report)
