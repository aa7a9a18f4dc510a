"""pytest-benchmark: QIG at scale — peak memory and calibration time against MBQ / GPTQ, and what the
cheap default attribution costs in token-weight agreement and block error against the paper's m = 32.

Each measurement is one calibration in a fresh process (``scale_probe.py``: peak RSS is its own).
Per round, interleaved in one run: ``mbq``, ``qig`` (default options), ``gptq``, ``qig-gptq``
(default options); the paper setting ``qig -o qig.steps=32 -o qig.adaptive=false`` (midpoint) runs
once per format as the reference. Reported per format (``extra_info`` and the end-of-run summary):

- ``time_ratio`` = t(qig) / t(mbq) per round (min / median / max: 2 shared cores are noisy),
  goal <= 1.10; ``time_ratio_gptq`` = t(qig-gptq) / t(gptq);
- ``memory_ratio`` = peak RSS of qig / mbq and qig-gptq / gptq (goal <= 1.25), and the same for
  the working memory (peak minus the RSS with model and data loaded: the stricter view);
- ``spearman`` / ``max_abs_dlambda``: default QIG token weights vs m = 32 (per sample, over its
  non-padding tokens); ``block_error_delta`` = relative change of the mean block error vs m = 32
  (goal within 1%).

Sizes (``QIGBENCH_SCALE``): ``ci`` (default; seconds): Qwen2-VL-7B's shape narrowed 28x, 1 block,
8 samples, 112 px images. ``real``: narrowed 28x (hidden 128, intermediate 640, GQA, vocabulary
5430), 1 block, vision depth 2, **128 samples at the issue's real resolution**, 448 x 448 (256 image
tokens a sample, 42,726 tokens), 2 rounds (about 25 min a format on 2 shared cores). The real-shape
builder (``shape:qwen2vl-7b``) cannot narrow this far: it keeps head_dim and the GQA ratio whole,
so with 4 key-value heads its width divides by 1, 2 or 4, and it keeps the vision tower's real
width (1280 wide, 1024 patches an image: that alone is most of a CPU run); set
``QIGBENCH_SCALE_BUILDER=shapes`` (with a divisor of 4 or less) to measure on it. Override with
``QIGBENCH_SCALE_SAMPLES`` / ``_PIXELS`` / ``_DIVISOR`` / ``_LAYERS`` / ``_ROUNDS``:

    QIGBENCH_SCALE=real pytest tests/benchmarks/test_bench_scale.py --benchmark-only -s
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from scale_shapes import scale_model_dir
from qigbench.cost.agreement import agreement

PROBE = Path(__file__).with_name("scale_probe.py")
ALLOCATOR = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
FORMATS = ("W3A16", "W4A8")
PAPER = {"qig.steps": "32", "qig.quadrature": "midpoint", "qig.adaptive": "false"}
#: variant -> (method, options); run every round, interleaved
VARIANTS: dict[str, tuple[str, dict[str, str]]] = {
    "mbq": ("mbq", {}), "qig": ("qig", {}), "gptq": ("gptq", {}), "qig-gptq": ("qig-gptq", {}),
}  # fmt: skip


@dataclass(frozen=True)
class ScaleSize:
    divisor: int
    layers: int
    samples: int
    pixels: int
    rounds: int


def scale_size() -> ScaleSize:
    real = os.environ.get("QIGBENCH_SCALE", "ci") == "real"
    base = ScaleSize(28, 1, 128, 448, 2) if real else ScaleSize(28, 1, 8, 112, 1)
    env = {k: os.environ.get(f"QIGBENCH_SCALE_{k.upper()}") for k in ("divisor", "layers", "samples", "pixels",
                                                                        "rounds")}  # fmt: skip
    return ScaleSize(**{k: int(v) if v else getattr(base, k) for k, v in env.items()})


def _probe(model_dir: Path, cache: Path, method: str, fmt: str, samples: int, options: dict[str, str],
           out: Path) -> dict[str, Any]:  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **ALLOCATOR}
    args = [sys.executable, str(PROBE), str(model_dir), str(cache), method, fmt, str(samples), json.dumps(options),
            str(out)]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=3600, check=False)
    if done.returncode != 0:
        pytest.fail(f"scale probe {method} {options} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} [{min(values):.3f}, {max(values):.3f}]"


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_bench_qig_at_scale(
    benchmark: Any, fmt: str, bench_cache: Path, tmp_path: Path, summary: list[str]
) -> None:
    size = scale_size()
    model_dir = scale_model_dir(bench_cache, size.divisor, size.layers, size.pixels)
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}

    def one_round() -> None:
        for variant, (method, options) in VARIANTS.items():
            out = tmp_path / f"{variant}-{len(runs[variant])}.pt"
            runs[variant].append({**_probe(model_dir, bench_cache, method, fmt, size.samples, options, out),
                                  "weights_file": out})  # fmt: skip

    benchmark.group = f"qig-at-scale-{fmt}"
    benchmark.pedantic(one_round, rounds=size.rounds, iterations=1)
    paper_file = tmp_path / "qig-m32.pt"
    paper = _probe(model_dir, bench_cache, "qig", fmt, size.samples, PAPER, paper_file)

    n = len(runs["mbq"])
    ratio = [runs["qig"][i]["seconds"] / runs["mbq"][i]["seconds"] for i in range(n)]
    ratio_gptq = [runs["qig-gptq"][i]["seconds"] / runs["gptq"][i]["seconds"] for i in range(n)]
    peak = {v: max(r["peak_rss"] for r in rs) for v, rs in runs.items()}
    work = {v: max(r["working"] for r in rs) for v, rs in runs.items()}
    agree = agreement(torch.load(paper_file), torch.load(runs["qig"][-1]["weights_file"]))
    err, err_paper = runs["qig"][-1]["mean_block_error"], paper["mean_block_error"]
    result = {
        "time_ratio": ratio, "time_ratio_gptq": ratio_gptq,
        "memory_ratio": peak["qig"] / peak["mbq"], "memory_ratio_gptq": peak["qig-gptq"] / peak["gptq"],
        "working_ratio": work["qig"] / work["mbq"], "working_ratio_gptq": work["qig-gptq"] / work["gptq"],
        **agree,
        "block_error": err, "block_error_m32": err_paper, "block_error_delta": (err - err_paper) / err_paper,
        "seconds": {v: [r["seconds"] for r in rs] for v, rs in runs.items()}, "seconds_m32": paper["seconds"],
        "attribution_seconds": [r["attribution_seconds"] for r in runs["qig"]],
        "steps_used": runs["qig"][-1]["steps_used"], "peak_rss": peak, "working": work,
    }  # fmt: skip
    benchmark.extra_info.update(format=fmt, size=vars(size), model=model_dir.name, tokens=paper["tokens"], **result)
    mib = 2**20
    summary.append(
        f"qig at scale ({model_dir.name}, {fmt}, {size.samples} samples, {paper['tokens']} tokens, {n} rounds): "
        f"time qig/mbq {_spread(ratio)} (goal <= 1.10), qig-gptq/gptq {_spread(ratio_gptq)}; "
        f"peak RSS qig/mbq {result['memory_ratio']:.3f}, qig-gptq/gptq {result['memory_ratio_gptq']:.3f} "
        f"(goal <= 1.25; working {result['working_ratio']:.3f} / {result['working_ratio_gptq']:.3f}, "
        f"{ {v: round(w / mib) for v, w in work.items()} } MiB); vs m=32: Spearman mean {agree['spearman_mean']:.4f} "
        f"(min {agree['spearman_min']:.3f}), max|dlambda| {agree['max_abs_dlambda']:.2e} (max lambda "
        f"{agree['max_lambda']:.2e}), block error {err:.5g} vs {err_paper:.5g} ({result['block_error_delta']:+.3%}, "
        f"goal within 1%); m=32 took {paper['seconds']:.1f}s vs default "
        f"{statistics.median(result['seconds']['qig']):.1f}s"
    )
    out = os.environ.get("QIGBENCH_SCALE_OUT")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with open(out, "a") as f:
            f.write(json.dumps({"format": fmt, "size": vars(size), **result}, default=str) + "\n")
    assert all(r > 0 for r in ratio) and 0 < err < 1 and 0 < err_paper < 1
    assert -1.0 <= agree["spearman_min"] <= agree["spearman_mean"] <= 1.0
