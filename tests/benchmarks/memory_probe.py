"""Measure the engine's working memory in a fresh process (run by test_memory.py; prints JSON).

    python tests/benchmarks/memory_probe.py MODEL_DIR CACHE_DIR METHOD SAMPLES TOKENS

A fresh process per measurement, so a peak is this run's alone. Order: load the model and the
calibration batches, collect garbage, take the RSS (``baseline``: interpreter + torch + model +
data), reset the peak RSS, calibrate, take the peak. ``working = peak - baseline`` is what the
calibration itself added on top of a loaded model — the quantity that must not grow with depth.
``peak - parameter_bytes`` (the issue's wording) is recorded too; it includes the interpreter and
libraries (hundreds of MB), which dilute any growth, so it is the weaker check.

Run it with glibc told to hand freed memory back (``MALLOC_MMAP_THRESHOLD_=65536``,
``MALLOC_TRIM_THRESHOLD_=0``, as test_memory.py does): otherwise freed heap memory stays in RSS and
fragmentation makes RSS creep block after block (5-13% over 8 blocks here) while the live tensors
stay flat. ``live_tensor_bytes_per_block`` (at the start of each block) is the allocator-free view.
"""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from qigbench.cost.probes import current_rss_bytes, parameter_bytes, peak_rss_bytes, reset_peak_rss
from qigbench.data.defaults import default_calibration
from qigbench.data.loader import load_calibration
from qigbench.engine.method import get_method
from qigbench.engine.run import EngineConfig, calibrate
from qigbench.models.loading import load_model
from qigbench.quant import parse_format


def _materialise_(model: torch.nn.Module) -> int:
    """Copy every parameter and buffer into anonymous memory; returns how many were file-backed before.

    ``from_pretrained`` may leave safetensors weights memory-mapped: once read they count in RSS
    as file pages, and when the engine replaces a weight the mapping (shared by the whole file) stays
    resident — memory that grows with depth but belongs to the loader, not to the calibration.
    """
    mapped = 0
    maps = Path("/proc/self/maps").read_text() if sys.platform.startswith("linux") else ""
    files = [line for line in maps.splitlines() if ".safetensors" in line]
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            ptr = tensor.untyped_storage().data_ptr()
            for line in files:
                lo, hi = (int(v, 16) for v in line.split()[0].split("-"))
                if lo <= ptr < hi:
                    mapped += 1
                    break
            tensor.data = tensor.data.clone()
    return mapped


def live_tensor_bytes() -> int:
    """Bytes of every tensor storage reachable by the garbage collector (each storage once).

    Independent of the allocator: it says what the program holds, where RSS says what the process
    got from the OS (glibc keeps freed heap memory, so RSS can creep while nothing is retained).
    """
    seen: set[int] = set()
    total = 0
    for obj in gc.get_objects():
        if isinstance(obj, torch.Tensor):
            storage = obj.untyped_storage()
            if storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                total += storage.nbytes()
    return total


def main(model_dir: str, cache: str, method: str, samples: int, tokens: int) -> dict[str, object]:
    torch.set_num_threads(1)
    loaded = load_model(model_dir)
    source = default_calibration(loaded, cache, n=samples, seed=0)
    # Any: CalibrationBatch.answer_mask is a Tensor, the engine's protocol says Tensor | None (invariant)
    batches: Sequence[Any] = load_calibration(
        source, model=loaded, n_samples=samples, batch_size=4, max_length=tokens
    ).batches
    mapped = _materialise_(loaded.model)
    gc.collect()
    params = parameter_bytes(loaded.model)
    load_peak = peak_rss_bytes()
    baseline = current_rss_bytes()
    plugin = get_method(method)
    live: list[int] = []
    quantize_block = plugin.quantize_block

    def counting_quantize_block(ctx: Any) -> None:  # live tensors as each block starts
        live.append(live_tensor_bytes())
        quantize_block(ctx)

    plugin.quantize_block = counting_quantize_block  # type: ignore[method-assign]
    resettable = reset_peak_rss()
    report = calibrate(loaded.model, loaded.family, batches, plugin, parse_format("W3A16"),
            EngineConfig(progress=False))
    peak = peak_rss_bytes()
    gc.collect()
    end = current_rss_bytes()
    return {
        "layers": len(report.blocks),
        "method": method,
        "tokens": int(sum(int((b.token_types != 0).sum()) for b in batches)),
        "parameter_bytes": params,
        "baseline_rss": baseline,
        "load_peak_rss": load_peak,
        "peak_rss": peak,
        "peak_resettable": resettable,
        "working": peak - baseline,
        "peak_minus_params": peak - params,
        "live_tensor_bytes_per_block": live,
        "end_rss": end,
        "retained": end - baseline,
        "parameter_bytes_after": parameter_bytes(loaded.model),
        "file_mapped_tensors": mapped,
        "seconds": report.seconds,
        "mean_block_error": report.mean_block_error,
    }


if __name__ == "__main__":
    model_dir, cache, method, samples, tokens = sys.argv[1:6]
    print(json.dumps(main(model_dir, cache, method, int(samples), int(tokens))))
