"""One calibration in a fresh process, measured from outside the engine (the unit of a round).

    python -m qigbench.cost.isolated REQUEST_JSON      # prints one JSON line: the measurement

A fresh process per calibration so its peak memory is its own. Order: load the real-shape model
and its calibration batches (the pipeline's ``calibration_batches``), copy the weights out of their
safetensors mapping, collect garbage, take the RSS (``baseline_rss``: interpreter + torch + model +
data), reset the peak, calibrate, take the peak. ``working = peak - baseline`` is what the
calibration itself added on top of the loaded model. On CUDA the peak is the device's peak
allocation and the baseline what was allocated before ``calibrate()``.

Times: ``cpu_seconds`` is this process's CPU time over ``calibrate()`` (``time.process_time``; on a
shared machine it leaves out the time other processes held the cores, so ratios of it are steadier
than ratios of wall time), ``seconds`` the wall time. The phases are timed by wrapping, for the
run only: the method's ``prepare`` (MBQ's model-level gradient pass), ``token_weights`` (for QIG:
building the RTN twin and target, then the provider), the provider call alone (``QIGProvider``),
the scale search (``EqualizationMethod._search``) and the GPTQ solve (``GPTQMethod._solve``).

``run_floor`` (mode ``floor``) calibrates once more under the QIG floor probe
(``qigbench.cost.qig_floor``, issue 19's method side): per group, m x (forward of f and of f_q +
one backward) + the search, each timed alone on the same inputs.

``build_inputs`` makes the model and the calibration set once (in a process of its own, so the
parent of a long run stays small); every measurement then only loads them.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from qigbench.cost.probes import current_rss_bytes, parameter_bytes, peak_rss_bytes, reset_peak_rss, time_calls

#: glibc: hand freed memory back, so RSS follows what is held (see tests/benchmarks/memory_probe.py)
ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


@dataclass(frozen=True)
class IsolatedRequest:
    #: a shape spelling (shape:qwen2vl-7b@2+vision=2+width=4), or any model alias / folder (tiny-qwen2vl)
    model: str
    method: str
    options: tuple[tuple[str, str], ...] = ()
    format: str = "W3A16"
    samples: int = 32
    batch_size: int = 4
    image_size: int = 448
    device: str = "cpu"
    dtype: str = "auto"
    seed: int = 0
    cache_dir: str | None = None
    threads: int = 1  # torch threads on CPU (one: steadier on a shared machine)
    memory_budget: str | None = None
    #: where to torch.save the run's token weights ({block: {group: lambda}}, token_types); "" = not saved
    weights_out: str = ""
    extra: dict[str, str] = field(default_factory=dict)  # free-form labels carried into the record

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> IsolatedRequest:
        data = json.loads(text)
        data["options"] = tuple(tuple(p) for p in data.get("options", ()))
        return cls(**data)


def _quantize_request(req: IsolatedRequest, folder: str = "", calib: str | None = None) -> Any:
    from qigbench.pipeline import QuantizeRequest

    return QuantizeRequest(
        model=folder, method=req.method, format=req.format, options=req.options, calib=calib, samples=req.samples,
        seed=req.seed, batch_size=req.batch_size, device=req.device, dtype=req.dtype, cache_dir=req.cache_dir,
        progress=False, memory_budget=req.memory_budget,
    )


def build_inputs(req: IsolatedRequest) -> tuple[str, str | None]:
    """Build (or find in the cache) the model and its calibration set; returns what to load and the set's path."""
    from dataclasses import replace

    from qigbench.data.defaults import default_calibration
    from qigbench.models.loading import load_model
    from qigbench.models.shapes.alias import parse_shape_alias
    from qigbench.models.shapes.data import PREFIX

    dtype = _quantize_request(req).torch_dtype()
    if req.model.startswith(PREFIX):
        shape = replace(parse_shape_alias(req.model), dtype=str(dtype).removeprefix("torch."))
        folder = str(shape.build(req.cache_dir))
    else:
        folder = req.model  # an alias or a folder: load_model finds (or builds) it
    loaded = load_model(folder, dtype=dtype, device="cpu", cache_dir=req.cache_dir)
    calib = None
    if loaded.family.multimodal:
        n = max(128, req.samples)  # the same set for every sample count, as `qigbench cost` draws it
        calib = str(default_calibration(loaded, req.cache_dir, n=n, seed=req.seed, image_size=req.image_size))
    return folder, calib


def materialise_(model: torch.nn.Module) -> None:
    """Copy every weight out of its safetensors mapping: mapped file pages would count in RSS and stay
    resident when the engine replaces a weight (memory of the loader, not of the calibration)."""
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            tensor.data = tensor.data.clone()


def _phase_owners() -> list[tuple[str, Any, str]]:
    """(phase name, class, attribute) of every phase timed from outside; imported lazily (plugins)."""
    from qigbench.bases.equalization import EqualizationMethod
    from qigbench.bases.gptq_family import GPTQMethod
    from qigbench.sensitivity.qig_provider import QIGProvider

    return [
        ("provider", QIGProvider, "__call__"),
        ("search", EqualizationMethod, "_search"),
        ("gptq_solve", GPTQMethod, "_solve"),
    ]


def _load(req: IsolatedRequest) -> tuple[Any, Any, Any, list[Any]]:
    """(quantize request, loaded model, method plugin, calibration batches), the weights materialised."""
    from qigbench.engine.method import get_method
    from qigbench.models.loading import load_model
    from qigbench.pipeline import calibration_batches

    if torch.device(req.device).type != "cuda":
        torch.set_num_threads(req.threads)
    folder, calib = build_inputs(req)  # cached: only found here
    qreq = _quantize_request(req, folder, calib)
    loaded = load_model(folder, dtype=qreq.torch_dtype(), device="cpu", cache_dir=req.cache_dir)
    plugin = get_method(req.method, dict(req.options))
    batches, _ = calibration_batches(qreq, loaded, plugin)
    materialise_(loaded.model)
    gc.collect()
    return qreq, loaded, plugin, batches


def floor_probe_available() -> bool:
    """Whether the QIG floor probe (issue 19's method side, ``qigbench.cost.qig_floor``) is installed."""
    import importlib.util

    return importlib.util.find_spec("qigbench.cost.qig_floor") is not None


def run_floor(req: IsolatedRequest) -> dict[str, Any]:
    """QIG's floor on this request's inputs: per group, the evaluated points x (f + f_q forward, + backward
    where taken) + search (:class:`qigbench.cost.qig_floor.GroupFloor`)."""
    from qigbench.cost.qig_floor import probe_qig_floor  # type: ignore[import-not-found,unused-ignore]
    from qigbench.memory import parse_bytes

    qreq, loaded, _, batches = _load(req)
    cpu_start = time.process_time()
    report = probe_qig_floor(
        loaded.model, loaded.family, batches, qreq.quant_format, method=req.method, options=req.options,
        device=req.device, memory_budget=parse_bytes(req.memory_budget),
    )  # fmt: skip
    groups = [g.as_dict() for g in report.groups]
    return {
        "request": asdict(req),
        "cpu_seconds": time.process_time() - cpu_start,  # the probed calibration, probes included
        "floor_cpu_seconds": report.floor,
        "groups_measured_cpu_seconds": report.measured,
        "search_cpu_seconds": sum(g["search"] for g in groups),
        "points_cpu_seconds": sum(g["path"] for g in groups),
        "groups": groups,
    }


def run_isolated(req: IsolatedRequest) -> dict[str, Any]:
    """Load, calibrate and measure (run this in a fresh process: the peak RSS is the process's)."""
    from qigbench.engine.run import EngineConfig, calibrate
    from qigbench.memory import parse_bytes

    cuda = torch.device(req.device).type == "cuda"
    qreq, loaded, plugin, batches = _load(req)
    params = parameter_bytes(loaded.model)
    baseline = torch.cuda.memory_allocated(req.device) if cuda else current_rss_bytes()
    reset_peak_rss()
    config = EngineConfig(device=req.device, progress=False, memory_budget=parse_bytes(req.memory_budget))
    timers: dict[str, Any] = {}
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    with ExitStack() as stack:
        for name, owner, attribute in _phase_owners():
            timers[name] = stack.enter_context(time_calls(owner, attribute, device=req.device if cuda else None))
        timers["token_weights"] = stack.enter_context(time_calls(type(plugin), "token_weights"))
        timers["prepare"] = stack.enter_context(time_calls(type(plugin), "prepare"))  # Method's is a no-op
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        report = calibrate(loaded.model, loaded.family, batches, plugin, qreq.quant_format, config)
        cpu, wall = time.process_time() - cpu_start, time.perf_counter() - wall_start
    peak = report.peak_memory_bytes if cuda else peak_rss_bytes()
    if req.weights_out:
        torch.save({"weights": report.token_weights, "token_types": report.token_types}, req.weights_out)
    return {
        "request": asdict(req),
        "cpu_seconds": cpu,
        "seconds": wall,
        "engine_seconds": report.seconds,
        "phases": {name: {"seconds": t.seconds, "cpu_seconds": t.cpu_seconds, "calls": t.calls}
                   for name, t in timers.items()},
        "block_seconds": [float(b["seconds"]) for b in report.blocks if "seconds" in b],
        "baseline_bytes": baseline,
        "peak_bytes": peak,
        "working_bytes": peak - baseline,
        "parameter_bytes": params,
        "peak_kind": "cuda_max_allocated" if cuda else "peak_rss",
        "mean_block_error": report.mean_block_error,
        "block_errors": [b["rel_error"] for b in report.blocks],
        "tokens": int(sum(int((b.token_types != 0).sum()) for b in batches)),
        "samples": int(sum(int(b.token_types.shape[0]) for b in batches)),
        "method_config": report.method,
        # the name the run is stored under (issue 19: qig, qig[steps=4], ...), where the method has one
        "variant_label": plugin.label() if callable(getattr(plugin, "label", None)) else None,
        "torch_threads": torch.get_num_threads(),
        "load_average": [load_before, os.getloadavg()[0] if hasattr(os, "getloadavg") else None],
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in ("measure", "build", "floor"):
        print("usage: python -m qigbench.cost.isolated {measure|build|floor} < REQUEST_JSON", file=sys.stderr)
        return 2
    req = IsolatedRequest.from_json(sys.stdin.read())
    if argv[1] == "build":
        folder, calib = build_inputs(req)
        print(json.dumps({"model_dir": folder, "calib": calib}))
    elif argv[1] == "floor":
        print(json.dumps(run_floor(req)))
    else:
        print(json.dumps(run_isolated(req)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
