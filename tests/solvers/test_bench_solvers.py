"""Benchmarks of the solvers (pytest-benchmark; not timed assertions).

``pytest tests/solvers/test_bench_solvers.py --benchmark-disable`` runs each body once, as a test.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from qigbench.quant import Granularity, QuantSpec, fake_quantize, parse_format
from qigbench.solvers import GPTQConfig, ScaleSearchConfig, gptq_quantize, search_scales, weighted_hessian


def _layer(n: int = 512, tokens: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, tokens // 4, n, generator=gen) @ (torch.randn(n, n, generator=gen) / n**0.5 + torch.eye(n))
    return torch.randn(n, n, generator=gen), x


def test_bench_gptq_512(benchmark: Any) -> None:
    weight, x = _layer()
    hessian = weighted_hessian(x)
    spec = QuantSpec(4, False, Granularity.PER_GROUP, 128)
    result = benchmark.pedantic(gptq_quantize, args=(weight, hessian, spec, GPTQConfig()), rounds=3, iterations=1)
    flat = x.reshape(-1, x.shape[-1])
    gptq_err = torch.linalg.norm(flat @ (weight - result.weight).T)
    rtn_err = torch.linalg.norm(flat @ (weight - fake_quantize(weight, spec)).T)
    benchmark.extra_info["error_ratio_vs_rtn"] = float(gptq_err / rtn_err)
    assert gptq_err < rtn_err


def test_bench_scale_search_512(benchmark: Any) -> None:
    _, x = _layer(tokens=512)
    torch.manual_seed(0)
    linear = nn.Linear(512, 512)
    args = (x, [linear], linear, parse_format("W3A16"), None, None, ScaleSearchConfig())
    result = benchmark.pedantic(search_scales, args=args, rounds=2, iterations=1)
    assert len(result.losses) == 20
