"""pytest-benchmark: QIG's attribution overhead against MBQ on the same tiny VLM and data, one run.

Each round calibrates, back to back from freshly loaded fp models (loading is untimed):
``mbq``, ``qig`` (path points batched), ``qig`` with ``qig.batched=false`` (one forward/backward
per path point) and ``awq`` (the same scale search with uniform weights). Inside each run the
sensitivity work is timed by wrapping, for the duration of the run only:

- QIG: ``QIG.token_weights`` (building the RTN twin f_q and the target + the provider) and
  ``QIGProvider.__call__`` (the integrated gradients and the lambda post-processing);
- MBQ: ``MBQ.prepare`` (the gradient pass for the modality ratios) + ``MBQ.token_weights``.

Reported (``extra_info`` and the end-of-run summary):
``overhead_vs_mbq = (t_qig - t_mbq) / t_mbq`` against the registered goal ``qig_overhead_vs_mbq``
(qigbench/cost/goals.py: the goal, the paper's +5.5%, and why m = 32 misses it: a known gap),
``attribution_fraction = attribution / t_qig``, and the sequential / batched time ratio. Ratios use
the totals over rounds. Regime: tiny-qwen2vl (hidden 64), 8 samples, CPU — where QIG's per-group
attribution dwarfs everything MBQ does; Table 6 at a real width is ``test_bench_table6.py``.

    pytest tests/benchmarks/test_bench_qig_overhead.py --benchmark-only
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench_common import FORMAT, VLM_ALIAS, Stopwatch, bench_device, fresh_model, run_method, token_count

from methods.mbq import MBQ
from methods.qig import QIG
from qigbench.cost.goals import check, enforce
from qigbench.cost.probes import time_calls
from qigbench.models.loading import LoadedModel
from qigbench.sensitivity.qig_provider import QIGProvider

#: variant -> (method, options); QIG at the paper's m = 32 path points
VARIANTS: dict[str, tuple[str, dict[str, str]]] = {
    "mbq": ("mbq", {}),
    "qig": ("qig", {"qig.steps": "32"}),
    "qig-sequential": ("qig", {"qig.steps": "32", "qig.batched": "false"}),
    "awq": ("awq", {}),
}
ROUNDS = 2


def _timed_run(loaded: LoadedModel, batches: Sequence[Any], variant: str) -> dict[str, float]:
    method, options = VARIANTS[variant]
    with (
        time_calls(QIG, "token_weights") as qig_weights,
        time_calls(QIGProvider, "__call__") as qig_provider,
        time_calls(MBQ, "prepare") as mbq_prepare,
        time_calls(MBQ, "token_weights") as mbq_weights,
        Stopwatch() as wall,
    ):
        report = run_method(loaded, batches, method, options)
    return {
        "wall": wall.seconds,
        "engine": report.seconds,
        "attribution": qig_weights.seconds + mbq_prepare.seconds + mbq_weights.seconds,
        "provider": qig_provider.seconds,
        "mbq_prepare": mbq_prepare.seconds,
        "mean_block_error": report.mean_block_error,
    }


def test_bench_qig_vs_mbq(benchmark: Any, bench_cache: Path, vlm_batches: Sequence[Any], summary: list[str]) -> None:
    totals: dict[str, dict[str, float]] = {v: {} for v in VARIANTS}
    errors: dict[str, float] = {}

    def setup() -> tuple[tuple[dict[str, LoadedModel]], dict[str, Any]]:
        return ({v: fresh_model(VLM_ALIAS, bench_cache) for v in VARIANTS},), {}

    rounds: list[int] = []

    def one_round(models: dict[str, LoadedModel]) -> None:
        rounds.append(1)
        for variant, loaded in models.items():
            for key, value in _timed_run(loaded, vlm_batches, variant).items():
                if key == "mean_block_error":
                    errors[variant] = value
                else:
                    totals[variant][key] = totals[variant].get(key, 0.0) + value

    benchmark.group = "qig-vs-mbq"
    benchmark.pedantic(one_round, setup=setup, rounds=ROUNDS, iterations=1)

    n = len(rounds)  # 1 under --benchmark-disable
    t_mbq, t_qig, t_seq, t_awq = (totals[v]["wall"] for v in ("mbq", "qig", "qig-sequential", "awq"))
    qig_attr = totals["qig"]["attribution"]
    result = {
        "overhead_vs_mbq": (t_qig - t_mbq) / t_mbq,
        "attribution_fraction": qig_attr / t_qig,
        "provider_fraction": totals["qig"]["provider"] / t_qig,
        "mbq_attribution_fraction": totals["mbq"]["attribution"] / t_mbq,
        "overhead_vs_awq": (t_qig - t_awq) / t_awq,
        "sequential_over_batched": t_seq / t_qig,
        "sequential_provider_over_batched": totals["qig-sequential"]["provider"] / totals["qig"]["provider"],
    }
    benchmark.extra_info.update(
        model=VLM_ALIAS,
        format=FORMAT,
        samples=sum(int(b.token_types.shape[0]) for b in vlm_batches),
        tokens=token_count(vlm_batches),
        qig_steps=32,
        rounds=n,
        seconds_per_round={v: {k: s / n for k, s in t.items()} for v, t in totals.items()},
        mean_block_error=errors,
        **result,
    )
    per = {v: t["wall"] / n for v, t in totals.items()}
    verdict = check("qig_overhead_vs_mbq", result["overhead_vs_mbq"],
                    regime=f"{VLM_ALIAS}, {len(vlm_batches)} batches, {FORMAT}, {bench_device()}, {n} rounds")
    summary.append(
        f"qig vs mbq ({VLM_ALIAS}, {FORMAT}, m=32, mean of {n} rounds): "
        f"mbq {per['mbq']:.2f}s, qig {per['qig']:.2f}s, qig-sequential {per['qig-sequential']:.2f}s, "
        f"awq {per['awq']:.2f}s | attribution {result['attribution_fraction']:.1%} of qig "
        f"(provider {result['provider_fraction']:.1%}), mbq's own {result['mbq_attribution_fraction']:.1%}, "
        f"sequential/batched {result['sequential_over_batched']:.2f}"
    )
    summary.append(verdict.line)
    benchmark.extra_info["goal"] = {"name": verdict.goal.name, "status": verdict.status}
    assert 0.0 < qig_attr < t_qig, "the attribution time is part of the calibration time"
    assert totals["qig"]["provider"] <= qig_attr
    assert totals["mbq"]["provider"] == 0.0 and totals["qig"]["mbq_prepare"] == 0.0
    # batched and sequential path points are the same integral: the quantized model must agree
    assert abs(errors["qig"] - errors["qig-sequential"]) <= 1e-6 * max(errors["qig"], 1e-12)
    enforce(verdict)  # a missed goal passes only as a registered known gap (and the line says so)
