"""One calibration in a fresh process, for the scale benchmark (prints JSON; run by test_bench_scale.py).

    python tests/benchmarks/scale_probe.py MODEL_DIR CACHE METHOD FORMAT SAMPLES OPTIONS_JSON WEIGHTS_OUT

A fresh process per run so its peak RSS is its own: ``working = peak RSS - RSS just before
calibrate()`` (model and calibration batches loaded), as in memory_probe.py. The token weights
of every block and group are saved to ``WEIGHTS_OUT`` (torch.save) to compare variants.

``QIGBENCH_BENCH_DEVICE=cuda`` calibrates on the GPU in bfloat16; then ``peak`` is the CUDA peak
allocation of the calibration and ``working`` the same minus what was allocated before it.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from typing import Any

import torch

from qigbench.cost.probes import current_rss_bytes, peak_rss_bytes, reset_peak_rss, time_calls
from qigbench.data.defaults import default_calibration
from qigbench.data.loader import load_calibration
from qigbench.engine.method import get_method
from qigbench.engine.run import EngineConfig, calibrate
from qigbench.models.loading import load_model
from qigbench.quant import parse_format
from qigbench.sensitivity.qig_provider import QIGProvider


def main(model_dir: str, cache: str, method: str, fmt: str, samples: int, options: dict[str, str], out: str) -> Any:
    device = os.environ.get("QIGBENCH_BENCH_DEVICE", "cpu")
    cuda = torch.device(device).type == "cuda"
    if not cuda:
        torch.set_num_threads(1)
    loaded = load_model(model_dir, dtype=torch.bfloat16 if cuda else torch.float32)
    image_size = int(os.environ.get("QIGBENCH_SCALE_IMAGE_SIZE", "64"))  # the processor resizes to its own pixels
    source = default_calibration(loaded, cache, n=samples, seed=0, image_size=image_size)
    batches: Any = load_calibration(source, model=loaded, n_samples=samples, batch_size=4).batches
    if cuda:
        batches = [b.to("cpu", torch.bfloat16) for b in batches]
    with torch.no_grad():
        for tensor in [*loaded.model.parameters(), *loaded.model.buffers()]:
            tensor.data = tensor.data.clone()  # out of the safetensors mapping (see memory_probe.py)
    gc.collect()
    baseline = current_rss_bytes()
    reset_peak_rss()
    plugin = get_method(method, options)
    before = torch.cuda.memory_allocated(device) if cuda else 0
    with time_calls(QIGProvider, "__call__") as provider:
        engine = EngineConfig(device=device, progress=False)
        report = calibrate(loaded.model, loaded.family, batches, plugin, parse_format(fmt), engine)
    peak = report.peak_memory_bytes if cuda else peak_rss_bytes()
    if cuda:
        baseline = before
    torch.save({"weights": report.token_weights, "token_types": report.token_types}, out)
    return {
        "method": method,
        "options": options,
        "format": fmt,
        "seconds": report.seconds,
        "attribution_seconds": provider.seconds,
        "baseline_rss": baseline,
        "peak_rss": peak,
        "working": peak - baseline,
        "block_errors": [b["rel_error"] for b in report.blocks],
        "mean_block_error": report.mean_block_error,
        "tokens": int(sum(int((b.token_types != 0).sum()) for b in batches)),
        "steps_used": [g.get("sens.steps_used") for b in report.blocks for g in b.get("groups", {}).values()],
    }


if __name__ == "__main__":
    model_dir, cache, method, fmt, samples, options, out = sys.argv[1:8]
    print(json.dumps(main(model_dir, cache, method, fmt, int(samples), json.loads(options), out)))
