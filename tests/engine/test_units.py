"""The loop's unit of work: one block by default, a span of blocks when a method asks for it.

A method that only says ``units = spans`` and quantizes block by block must give the same model,
bit for bit, as with one-block units (the streams pass between the span's blocks exactly as they
pass between units); a resumed run continues at a unit boundary; a plan that does not tile the
blocks is an error that names the fix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from methods.awq import AWQ
from methods.rtn import RTN
from qigbench.engine.context import BlockContext
from qigbench.engine.contracts import WorkUnit, check_units, one_block_units, spans_of
from qigbench.engine.run import EngineConfig, calibrate
from qigbench.engine.unit import UnitContext, relative_error
from qigbench.errors import QigbenchError
from qigbench.models.registry import family_for, get_blocks
from qigbench.quant import parse_format


class _SpanAWQ(AWQ):
    """AWQ (without the clip search, to stay cheap) calibrated in spans of two blocks."""

    def units(self, n_blocks: int) -> Sequence[WorkUnit]:
        return spans_of(n_blocks, 2)


def _awq(span: bool) -> AWQ:
    from methods.awq import AWQConfig

    cls = _SpanAWQ if span else AWQ
    return cls(AWQConfig(clip_search=False, n_grid=4))


def test_work_units_cover_the_blocks_in_order() -> None:
    assert one_block_units(3) == [WorkUnit(0, 1), WorkUnit(1, 2), WorkUnit(2, 3)]
    assert spans_of(5, 2) == [WorkUnit(0, 2), WorkUnit(2, 4), WorkUnit(4, 5)]
    assert list(WorkUnit(2, 4)) == [2, 3] and len(WorkUnit(2, 4)) == 2
    assert check_units(spans_of(4, 3), 4, "M") == [WorkUnit(0, 3), WorkUnit(3, 4)]
    for bad in ([WorkUnit(0, 2), WorkUnit(3, 4)], [WorkUnit(0, 2), WorkUnit(1, 4)], [WorkUnit(0, 3)], []):
        with pytest.raises(QigbenchError, match=r"must cover blocks 0\.\.3 once each.*spans_of"):
            check_units(bad, 4, "M")
    with pytest.raises(QigbenchError, match="at least one block"):
        WorkUnit(2, 2)
    with pytest.raises(QigbenchError, match="at least one block"):
        spans_of(4, 0)


@pytest.mark.parametrize("fmt", ["W3A16g16", "W4A8"])
def test_span_units_give_the_one_block_result_bit_for_bit(tiny_llama_dir: Path, tools, fmt: str) -> None:  # type: ignore[no-untyped-def]
    batches = tools.batches(tiny_llama_dir)
    single, spans = tools.load(tiny_llama_dir), tools.load(tiny_llama_dir)
    family = family_for(single)
    assert len(get_blocks(single, family)) >= 3  # so spans of 2 include a full and a short span
    a = calibrate(single, family, batches, _awq(span=False), parse_format(fmt), EngineConfig(progress=False))
    b = calibrate(spans, family, batches, _awq(span=True), parse_format(fmt), EngineConfig(progress=False))
    for key, value in single.state_dict().items():
        assert torch.equal(value, spans.state_dict()[key]), key
    assert [s["rel_error"] for s in a.blocks] == [s["rel_error"] for s in b.blocks]
    assert [s["groups"] for s in a.blocks] == [s["groups"] for s in b.blocks]  # the same alphas
    assert "unit" not in a.blocks[0] and b.blocks[1]["unit"] == {"start": 0, "stop": 2}


class _Interrupt(Exception):
    pass


class _FlakySpanRTN(RTN):
    def __init__(self, die_at: int | None = None) -> None:
        super().__init__()
        self.die_at = die_at

    def units(self, n_blocks: int) -> Sequence[WorkUnit]:
        return [WorkUnit(0, 1), WorkUnit(1, n_blocks)]

    def quantize_block(self, ctx: BlockContext) -> None:
        if ctx.index == self.die_at:
            raise _Interrupt
        super().quantize_block(ctx)


def test_an_interrupted_span_resumes_at_its_first_block(tiny_llama_dir: Path, tmp_path: Path, tools) -> None:  # type: ignore[no-untyped-def]
    batches = tools.batches(tiny_llama_dir)
    fmt = "W4A8"
    full = tools.load(tiny_llama_dir)
    family = family_for(full)
    calibrate(full, family, batches, _FlakySpanRTN(), parse_format(fmt), EngineConfig(progress=False))
    resume = tmp_path / "resume"
    with pytest.raises(_Interrupt):  # dies in block 2, the second block of the span 1..2
        calibrate(tools.load(tiny_llama_dir), family, batches, _FlakySpanRTN(die_at=2), parse_format(fmt),
                  EngineConfig(progress=False, resume_dir=resume))
    second = tools.load(tiny_llama_dir)
    report = calibrate(second, family, batches, _FlakySpanRTN(), parse_format(fmt), EngineConfig(progress=False,
            resume_dir=resume))
    assert report.resumed_from_block == 1  # block 1 finished, but its span did not: redone
    for key, value in full.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    # the same directory with one-block units is another plan: refused, not mixed
    with pytest.raises(QigbenchError, match="differs in: units"):
        calibrate(tools.load(tiny_llama_dir), family, batches, RTN(), parse_format(fmt),
                  EngineConfig(progress=False, resume_dir=resume))


class _SpanReference(RTN):
    """Looks at the whole span before changing it: the fp reference of the span's output."""

    def units(self, n_blocks: int) -> Sequence[WorkUnit]:
        return [WorkUnit(0, n_blocks)]

    def quantize_unit(self, unit: UnitContext) -> None:
        reference = unit.run("fp")
        for ctx in unit:
            self.quantize_block(ctx)
        for got, ref in zip(unit.fp_outputs, reference, strict=True):  # the fp stream is the fp span
            assert torch.equal(got, ref)
        unit.log(span_error=relative_error(unit.run("fp"), reference, unit.token_types))


def test_a_method_sees_the_whole_span(llama) -> None:  # type: ignore[no-untyped-def]
    model, family, batches = llama
    with torch.no_grad():
        fp_logits = [model(**b.inputs).logits for b in batches]
    report = calibrate(model, family, batches, _SpanReference(), parse_format("W3A16g16"), EngineConfig(progress=False))
    n = len(get_blocks(model, family))
    spans = {(s["unit"]["start"], s["unit"]["stop"]) for s in report.blocks}
    assert spans == {(0, n)} and [s["block"] for s in report.blocks] == list(range(n))
    # every block quantized: the span's quantized output differs from its fp reference
    assert report.blocks[0]["unit"]["span_error"] > 0
    with torch.no_grad():
        assert not torch.equal(model(**batches[0].inputs).logits, fp_logits[0])


class _SkipsBlocks(RTN):
    def units(self, n_blocks: int) -> Sequence[WorkUnit]:
        return spans_of(n_blocks, 2)

    def quantize_unit(self, unit: UnitContext) -> None:
        for ctx in unit:
            self.quantize_block(ctx)
            break


def test_a_unit_must_step_through_every_block(llama) -> None:  # type: ignore[no-untyped-def]
    model, family, batches = llama
    with pytest.raises(QigbenchError, match=r"returned with 0 of the 2 blocks of blocks 0-1 done.*step through every"):
        calibrate(model, family, batches, _SkipsBlocks(), parse_format("W4A16g16"), EngineConfig(progress=False))


class _BadPlan(RTN):
    def units(self, n_blocks: int) -> Sequence[WorkUnit]:
        return [WorkUnit(0, 1)]


def test_a_plan_that_leaves_blocks_out_is_refused(llama) -> None:  # type: ignore[no-untyped-def]
    model, family, batches = llama
    with pytest.raises(QigbenchError, match=r"_BadPlan.units\(\d+\) returned the spans 0..0"):
        calibrate(model, family, batches, _BadPlan(), parse_format("W4A16g16"), EngineConfig(progress=False))


def test_out_of_memory_in_a_span_resumes_at_the_span(tmp_path: Path) -> None:
    from qigbench.engine.run import out_of_memory_error

    cfg = EngineConfig(resume_dir=tmp_path, memory_budget=2**30)
    message = str(out_of_memory_error(MemoryError("host"), cfg, "m", block=3, resume_at=2))
    assert "out of memory on cpu in block 3" in message and "--memory-budget 512.0MiB" in message
    assert f"blocks before 2 are saved in {tmp_path}" in message and "continue from block 2" in message
