"""Decode speed of smollm2-135m with real low-bit kernels vs the float model (pytest-benchmark).

    pytest tests/benchmarks/test_bench_kernels.py [--device cuda] --benchmark-columns=median,iqr

One benchmark per implementation, each timing ``NEW_TOKENS`` greedy decode steps on a KV cache
that an untimed prefill built (same prompt for all): fp32 and bf16 dense, weight-only int4
(W4A16 g64, as 576 is not a multiple of 128; torch's int4 packed matmul, bf16 activations) and
int8 x int8 (W8A8, ``torch._int_mm``). The summary
at the end states each median as a ratio to fp32 measured in the same run — a slow-down is
reported as such (a 135M model on one CPU thread is dominated by per-op overhead, not by weight
bytes). Before timing, each kernel model's logits are checked against its fake-quant model.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

from qigbench.kernels import use_kernels_
from qigbench.models.loading import load_model
from qigbench.pipeline import QuantizeRequest, quantize

MODEL = "smollm2-135m"
NEW_TOKENS = 8
PROMPT = "The history of the river valley begins with the first farmers who settled"
IMPLS = ["fp32", "bf16", "int4-W4A16g64", "int8-W8A8"]
MEDIANS: dict[str, float] = {}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def device(request: pytest.FixtureRequest) -> str:
    chosen = request.config.getoption("qig_device", default=None) or "cpu"
    if str(chosen).startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("--device cuda but no CUDA device")
    return str(chosen)


@pytest.fixture(scope="module")
def models(device: str, bench_cache: Path) -> dict[str, Any]:
    built: dict[str, Any] = {}
    base = load_model(MODEL, cache_dir=bench_cache)
    ids = base.tokenizer([PROMPT], return_tensors="pt")["input_ids"]
    built["fp32"] = copy.deepcopy(base.model).to(device)
    built["bf16"] = copy.deepcopy(base.model).to(device=device, dtype=torch.bfloat16)
    for impl, fmt in (("int4-W4A16g64", "W4A16g64"), ("int8-W8A8", "W8A8")):  # 576 = 4.5 x 128: no g128
        result = quantize(QuantizeRequest(model=MODEL, method="rtn", format=fmt, cache_dir=str(bench_cache),
                                          progress=False), loaded=load_model(MODEL, cache_dir=bench_cache))
        fake = result.loaded.model
        with torch.no_grad():
            ref = fake(input_ids=ids).logits
        fast = copy.deepcopy(fake).to(device)
        use_kernels_(fast, device)
        with torch.no_grad():
            got = fast(input_ids=ids.to(device)).logits.float().cpu()
        if impl.startswith("int4"):  # bfloat16 activations: rounding only (a wrong zero point is off by ~1)
            assert float((got - ref).abs().max() / ref.abs().max()) < 0.1, impl
        else:
            # W8A8 re-quantizes activations at every linear: the fake-quant smollm2 itself moves its logits
            # by ~3.8 when each linear's output is perturbed by 1e-6 (measured), so positions that attend
            # to earlier ones diverge; the first position is one chain of layers and must agree
            assert float((got[:, 0] - ref[:, 0]).abs().max() / ref[:, 0].abs().max()) < 1e-4, impl
        built[impl] = fast
    built["ids"] = ids.to(device)
    return built


def _prefill(model: torch.nn.Module, ids: torch.Tensor) -> tuple[tuple[Any, ...], dict[str, Any]]:
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True)
    return (model, out.past_key_values, out.logits[:, -1:].argmax(-1)), {}


def _decode(model: torch.nn.Module, past: Any, token: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        for _ in range(NEW_TOKENS):
            out = model(input_ids=token, past_key_values=past, use_cache=True)
            past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        if token.is_cuda:
            torch.cuda.synchronize()
    return token


@pytest.mark.parametrize("impl", IMPLS)
def test_decode_speed(impl: str, models: dict[str, Any], benchmark: Any, summary: list[str], device: str) -> None:
    model, ids = models[impl], models["ids"]
    _decode(*_prefill(model, ids)[0])  # warm
    benchmark.group = f"{MODEL} decode x{NEW_TOKENS} on {device}"
    benchmark.pedantic(_decode, setup=lambda: _prefill(model, ids), rounds=7, warmup_rounds=1)
    if benchmark.stats is None:  # --benchmark-disable
        return
    MEDIANS[impl] = benchmark.stats.stats.median
    ms = 1000 * MEDIANS[impl] / NEW_TOKENS
    line = f"{MODEL} {impl} on {device}: {ms:.1f} ms/token ({1000 / ms:.1f} tok/s)"
    if impl != "fp32" and "fp32" in MEDIANS:
        ratio = MEDIANS["fp32"] / MEDIANS[impl]
        line += f", {ratio:.2f}x fp32 ({'faster' if ratio > 1 else 'slower'})"
    summary.append(line)
