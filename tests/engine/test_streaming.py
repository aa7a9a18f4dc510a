"""Streaming under a memory budget changes how the work is cut, never the result.

A probe method runs the real engine on a tiny Llama (padded batches of 2, so masks and rotary
embeddings are per batch) and keeps each block's context unquantized. On those real replays:

- ``Replay.rows`` reproduces the rows of the full replay (also when it cuts a recorded batch);
- for random budgets (from one row to everything at once), streamed QIG / gradient /
  leave-one-out token weights equal the one-shot ones, and the streamed scale search finds the
  same losses and scales, within float tolerance;
- the streamed (per-batch) GPTQ Hessian equals the one-shot Hessian.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qigbench.bases.token_weighting import attribution_target
from qigbench.engine.context import BlockContext
from qigbench.engine.method import Method
from qigbench.engine.run import EngineConfig, calibrate
from qigbench.memory import parse_bytes, row_spans
from qigbench.quant import parse_format
from qigbench.sensitivity import AttributionTarget, get_provider
from qigbench.solvers.hessian import HessianAccumulator
from qigbench.solvers.scale_search import ScaleSearchConfig, search_scales

SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


class Probe(Method):
    """Keeps every block's context; quantizes nothing (the replays stay full precision)."""

    name = "probe"

    def __init__(self) -> None:
        super().__init__()
        self.contexts: list[BlockContext] = []

    def quantize_block(self, ctx: BlockContext) -> None:
        self.contexts.append(ctx)


def _contexts(tiny_llama_dir: Path, tools: Any, fmt: str) -> list[BlockContext]:
    model = tools.load(tiny_llama_dir)
    from qigbench.models.registry import family_for

    probe = Probe()
    calibrate(model, family_for(model), tools.batches(tiny_llama_dir), probe, parse_format(fmt),
            EngineConfig(progress=False))
    return probe.contexts


@pytest.fixture(scope="module")
def contexts(tiny_llama_dir: Path, tools: Any) -> dict[str, list[BlockContext]]:
    return {fmt: _contexts(tiny_llama_dir, tools, fmt) for fmt in ("W3A16g32", "W4A8")}


def _target(ctx: BlockContext, group: str) -> AttributionTarget:
    return attribution_target(ctx, ctx.group(group))


def test_replay_rows_equal_the_rows_of_the_full_replay(contexts: dict[str, list[BlockContext]]) -> None:
    ctx = contexts["W3A16g32"][1]
    for group in ctx.groups():
        replay = ctx.compared(group, "fp")
        x = replay.inputs()
        full = replay(x)
        twice = replay(torch.cat([x, 2 * x]))  # the copy-major contract still holds on a subset
        for a, b in [(0, 1), (1, 3), (0, replay.total), (3, 4)]:
            sub = replay.rows(a, b)
            assert torch.allclose(sub(x[a:b]), full[a:b], atol=1e-5), (group.name, a, b)
            both = sub(torch.cat([x[a:b], 2 * x[a:b]]))
            assert torch.allclose(both[b - a :], twice[replay.total + a : replay.total + b], atol=1e-5)
    with pytest.raises(ValueError, match="outside"):
        replay.rows(2, 99)


@SETTINGS
@given(data=st.data())
def test_streamed_token_weights_equal_one_shot(contexts: dict[str, list[BlockContext]], data: st.DataObject) -> None:
    fmt = data.draw(st.sampled_from(sorted(contexts)))
    ctx = contexts[fmt][1]
    group = data.draw(st.sampled_from([g.name for g in ctx.groups()]))
    name, config = data.draw(st.sampled_from([
        ("qig", {"steps": 4}), ("qig", {"steps": 3, "quadrature": "gauss"}), ("gradient", {}), ("leave_one_out", {}),
    ]))  # fmt: skip
    target = _target(ctx, group)
    assert target.row_bytes is not None
    copies = {"qig": config.get("steps", 1), "gradient": 1}.get(name, int(target.x.shape[1]))
    rows = data.draw(st.integers(1, target.batch * copies))
    one_shot = get_provider(name, **config)(dataclasses.replace(target, memory_budget=None))
    streamed_target = dataclasses.replace(target, memory_budget=rows * target.row_bytes)
    spans, per_call = streamed_target.chunking(copies)
    assert max(b - a for a, b in spans) * per_call <= max(rows, 1) or per_call == 1
    streamed = get_provider(name, **config)(streamed_target)
    assert torch.allclose(streamed.weights, one_shot.weights, atol=1e-5, rtol=1e-4), (name, fmt, group, rows)
    if name == "qig" and not streamed.diagnostics.get("degenerate_input"):
        assert streamed.diagnostics["sample_chunks"] == len(spans)


@SETTINGS
@given(data=st.data())
def test_streamed_scale_search_equals_one_shot(contexts: dict[str, list[BlockContext]], data: st.DataObject) -> None:
    fmt = data.draw(st.sampled_from(sorted(contexts)))
    ctx = contexts[fmt][0]
    group = ctx.group(data.draw(st.sampled_from([g.name for g in ctx.groups(scalable_only=True)])))
    x = ctx.group_input(group)
    lam = torch.rand(ctx.token_types.shape) * (ctx.token_types != 0)
    lam = lam / lam.sum(dim=1, keepdim=True)
    chunk = data.draw(st.integers(1, int(x.shape[0])))

    def search(batch_chunk: int | None) -> Any:
        cfg = ScaleSearchConfig(n_grid=5, batch_chunk=batch_chunk)
        return search_scales(x, group.linears, ctx.compared(group), ctx.fmt, lam, ctx.token_types, cfg)

    one, many = search(None), search(chunk)
    assert torch.allclose(torch.tensor(many.losses), torch.tensor(one.losses), rtol=1e-5, atol=1e-12)
    gaps = sorted(one.losses)
    if gaps[1] - gaps[0] > 1e-4 * abs(gaps[0]):  # a clear winner: streaming must pick it too
        assert many.alpha == one.alpha and torch.equal(many.scales, one.scales)


def test_streamed_hessian_equals_one_shot(contexts: dict[str, list[BlockContext]]) -> None:
    ctx = contexts["W3A16g32"][0]
    calls = ctx.linear_calls("mlp.down_proj")
    lam = torch.rand(ctx.token_types.shape) * (ctx.token_types != 0)
    lam = lam / lam.sum(dim=1, keepdim=True)
    width = int(calls[0].input().shape[-1])
    one, streamed = HessianAccumulator(width), HessianAccumulator(width)
    one.add(torch.cat([c.input() for c in calls]), lam, ctx.token_types)
    start = 0
    for c in calls:
        stop = start + int(c.input().shape[0])
        streamed.add(c.input(), lam[start:stop], ctx.token_types[start:stop])
        start = stop
    assert torch.allclose(streamed.hessian, one.hessian, rtol=1e-5, atol=1e-7)


def test_row_spans_cover_every_row_once_and_respect_the_cap() -> None:
    for sizes, cap in [([2, 2, 2], 3), ([4], 1), ([1, 5, 2], 2), ([3, 3], 100)]:
        spans = row_spans(sizes, cap)
        assert spans[0][0] == 0 and spans[-1][1] == sum(sizes)
        assert all(b == c for (_, b), (c, _) in itertools.pairwise(spans))
        assert all(0 < b - a <= cap for a, b in spans)


def test_parse_bytes() -> None:
    assert parse_bytes("8GiB") == 8 * 2**30 and parse_bytes("512MB") == 512 * 10**6 and parse_bytes("1024") == 1024
    assert parse_bytes(None) is None and parse_bytes("auto") is None
    from qigbench.errors import QigbenchError

    with pytest.raises(QigbenchError, match="--memory-budget"):
        parse_bytes("lots")


class RunsOutOfMemory(Method):
    """RTN, except that block ``fail_at`` raises the allocator's out-of-memory error."""

    name = "rtn"  # the checkpoint fingerprint of a plain RTN run

    def __init__(self, fail_at: int | None, error: type[BaseException]) -> None:
        super().__init__()
        self.fail_at, self.error, self.seen = fail_at, error, []  # type: ignore[var-annotated]

    def quantize_block(self, ctx: BlockContext) -> None:
        self.seen.append(ctx.index)
        if ctx.index == self.fail_at:
            raise self.error("CUDA out of memory. Tried to allocate 20.00 GiB")
        ctx.rtn_()


@pytest.mark.parametrize("error", [torch.cuda.OutOfMemoryError, MemoryError])
def test_out_of_memory_is_an_actionable_error_and_the_run_resumes(
    tiny_llama_dir: Path, tools: Any, tmp_path: Path, error: type[BaseException]
) -> None:
    from qigbench.memory import CalibrationOutOfMemoryError
    from qigbench.models.registry import family_for

    batches = tools.batches(tiny_llama_dir)
    config = EngineConfig(progress=False, resume_dir=tmp_path / "ckpt", memory_budget=parse_bytes("64MiB"))
    model = tools.load(tiny_llama_dir)
    with pytest.raises(CalibrationOutOfMemoryError) as info:
        calibrate(model, family_for(model), batches, RunsOutOfMemory(1, error), parse_format("W3A16g32"), config)
    message = str(info.value)
    assert "--memory-budget 32.0MiB" in message and "block 1" in message
    assert f"--resume-dir {tmp_path / 'ckpt'}" in message and "continue from block 1" in message
    again = RunsOutOfMemory(None, error)
    model = tools.load(tiny_llama_dir)
    report = calibrate(model, family_for(model), batches, again, parse_format("W3A16g32"), config)
    assert report.resumed_from_block == 1 and again.seen[0] == 1  # blocks before 1 were not redone
    no_resume = EngineConfig(progress=False)
    with pytest.raises(CalibrationOutOfMemoryError, match="add --resume-dir DIR"):
        calibrate(tools.load(tiny_llama_dir), family_for(model), batches, RunsOutOfMemory(0, error),
                parse_format("W3A16g32"),
                  no_resume)  # fmt: skip


def test_quantize_refuses_a_bad_memory_budget_before_loading(capsys: pytest.CaptureFixture[str]) -> None:
    from qigbench.cli import main

    argv = ["quantize", "--model", "no-such-model", "--method", "rtn", "--memory-budget", "lots"]
    assert main(argv) == 2
    assert "--memory-budget 8GiB" in capsys.readouterr().err
