from __future__ import annotations

from pathlib import Path

import pytest
import torch

from methods.rtn import RTN
from qigbench.engine.context import BlockContext
from qigbench.engine.method import Method
from qigbench.engine.run import EngineConfig, calibrate
from qigbench.models.registry import get_blocks
from qigbench.quant import QuantLinear, fake_quantize, parse_format


def _logits(model: torch.nn.Module, batches) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    with torch.no_grad():
        return [model(**b.inputs).logits for b in batches]


def test_rtn_through_the_engine_equals_rounding_every_linear(llama) -> None:  # type: ignore[no-untyped-def]
    model, family, batches = llama
    blocks = get_blocks(model, family)
    originals = {n: m.weight.detach().clone() for n, m in blocks.named_modules() if isinstance(m, torch.nn.Linear)}
    report = calibrate(model, family, batches, RTN(), parse_format("W4A16g16"), EngineConfig(progress=False))
    fmt = parse_format("W4A16g16")
    quantized = dict(get_blocks(model, family).named_modules())
    for name, w in originals.items():
        assert isinstance(quantized[name], QuantLinear)
        assert torch.equal(quantized[name].weight, fake_quantize(w, fmt.weight))
    assert len(report.blocks) == len(get_blocks(model, family))
    assert all(b["rel_error"] > 0 for b in report.blocks)
    assert report.propagation == "fp"


def test_weight_activation_formats_propagate_the_quantized_stream(llama) -> None:  # type: ignore[no-untyped-def]
    model, family, batches = llama
    report = calibrate(model, family, batches, RTN(), parse_format("W4A8"), EngineConfig(progress=False))
    assert report.propagation == "quantized"
    # errors accumulate along the quantized stream, so the last block's error exceeds block 0's... at
    # least the error is measured against the fp block applied to the quantized-path input
    assert all(0 < b["rel_error"] < 1 for b in report.blocks)


class _Interrupt(Exception):
    pass


class _FlakyRTN(RTN):
    """RTN that dies at one block, like a run killed mid-way."""

    def __init__(self, die_at: int) -> None:
        super().__init__()
        self.die_at = die_at

    def quantize_block(self, ctx: BlockContext) -> None:
        if ctx.index == self.die_at:
            raise _Interrupt
        super().quantize_block(ctx)


def test_interrupted_run_resumes_to_identical_result(tiny_llama_dir: Path, tmp_path: Path, tools) -> None:  # type: ignore[no-untyped-def]
    load_llama, text_batches = tools.load, tools.batches
    batches = text_batches(tiny_llama_dir)
    fmt = "W3A16g16"
    full = load_llama(tiny_llama_dir)
    from qigbench.models.registry import family_for

    family = family_for(full)
    calibrate(full, family, batches, RTN(), parse_format(fmt), EngineConfig(progress=False))

    resume = tmp_path / "resume"
    first = load_llama(tiny_llama_dir)
    with pytest.raises(_Interrupt):
        calibrate(first, family, batches, _FlakyRTN(die_at=1), parse_format(fmt), EngineConfig(progress=False,
                resume_dir=resume))
    second = load_llama(tiny_llama_dir)
    report = calibrate(second, family, batches, RTN(), parse_format(fmt), EngineConfig(progress=False,
            resume_dir=resume))
    assert report.resumed_from_block == 1
    assert full.state_dict().keys() == second.state_dict().keys()
    for key, value in full.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    for a, b in zip(_logits(full, batches), _logits(second, batches), strict=True):
        assert torch.equal(a, b)


def test_resume_dir_of_another_configuration_is_refused(tiny_llama_dir: Path, tmp_path: Path, tools) -> None:  # type: ignore[no-untyped-def]
    load_llama, text_batches = tools.load, tools.batches
    from qigbench.errors import QigbenchError
    from qigbench.models.registry import family_for

    batches = text_batches(tiny_llama_dir)
    model = load_llama(tiny_llama_dir)
    family = family_for(model)
    calibrate(model, family, batches, RTN(), parse_format("W4A16g16"), EngineConfig(progress=False,
            resume_dir=tmp_path))
    with pytest.raises(QigbenchError, match="different configuration"):
        calibrate(load_llama(tiny_llama_dir), family, batches, RTN(), parse_format("W3A16g16"),
                  EngineConfig(progress=False, resume_dir=tmp_path))


class _Spy(Method):
    name = "spy"

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, torch.Tensor]] = []

    def quantize_block(self, ctx: BlockContext) -> None:
        group = ctx.groups()[0]
        x = ctx.group_input(group)
        y = ctx.compared(group)(x)
        # compared() replays the attention exactly as the block called it, also on k stacked copies
        stacked = ctx.compared(group)(torch.cat([x, 2 * x]))
        assert torch.allclose(stacked[: x.shape[0]], y, atol=1e-6)
        assert torch.allclose(stacked[x.shape[0] :], ctx.compared(group)(2 * x), atol=1e-6)
        self.seen.append((ctx.index, y))
        ctx.rtn_()


def test_compared_replays_the_real_call_and_batches_copies(llama) -> None:  # type: ignore[no-untyped-def]
    model, family, batches = llama
    spy = _Spy()
    calibrate(model, family, batches, spy, parse_format("W4A16g16"), EngineConfig(progress=False))
    assert [i for i, _ in spy.seen] == list(range(len(get_blocks(model, family))))


class _CountMLP(Method):
    """Records o_proj's input after a change: the pass must stop before the MLP runs."""

    name = "count"

    def __init__(self) -> None:
        super().__init__()
        self.mlp_calls: list[int] = []

    def quantize_block(self, ctx: BlockContext) -> None:
        ctx.run("fp")  # records everything once, as the engine's first pass does
        ctx.invalidate()
        calls = [0]
        mlp = ctx.block.get_submodule("mlp")
        handle = mlp.register_forward_pre_hook(lambda m, a: calls.__setitem__(0, calls[0] + 1))
        try:
            x = ctx.linear_input("self_attn.o_proj")
        finally:
            handle.remove()
        assert x.shape[-1] == ctx.block.get_submodule("self_attn.o_proj").in_features
        self.mlp_calls.append(calls[0])
        ctx.rtn_()


def test_targeted_recording_stops_the_block_early(llama) -> None:  # type: ignore[no-untyped-def]
    model, family, batches = llama
    spy = _CountMLP()
    calibrate(model, family, batches, spy, parse_format("W4A16g16"), EngineConfig(progress=False))
    assert spy.mlp_calls == [0] * len(get_blocks(model, family))


def test_resume_with_another_dtype_or_data_is_refused(tiny_llama_dir: Path, tmp_path: Path, tools) -> None:  # type: ignore[no-untyped-def]
    """Everything that changes the numbers is in the resume fingerprint: an fp32 run is not
    continued in bfloat16, nor on other calibration data (issue 11)."""
    from qigbench.errors import QigbenchError
    from qigbench.models.registry import family_for

    batches = tools.batches(tiny_llama_dir)
    model = tools.load(tiny_llama_dir)
    family = family_for(model)
    with pytest.raises(_Interrupt):
        calibrate(model, family, batches, _FlakyRTN(die_at=1), parse_format("W4A16g16"),
                  EngineConfig(progress=False, resume_dir=tmp_path))
    with pytest.raises(QigbenchError, match="dtype"):
        calibrate(tools.load(tiny_llama_dir).to(torch.bfloat16), family, [b.to("cpu", torch.bfloat16) for b in batches],
                  RTN(), parse_format("W4A16g16"), EngineConfig(progress=False, resume_dir=tmp_path))
    other = tools.batches(tiny_llama_dir)
    other[0].inputs["input_ids"] = other[0].inputs["input_ids"].flip(-1)
    with pytest.raises(QigbenchError, match="calibration_sha256"):
        calibrate(tools.load(tiny_llama_dir), family, other, RTN(), parse_format("W4A16g16"),
                  EngineConfig(progress=False, resume_dir=tmp_path))


class _SlowRTN(_FlakyRTN):
    """Sleeps in every block so the recorded time has a known lower bound."""

    def quantize_block(self, ctx: BlockContext) -> None:
        import time

        time.sleep(0.3)
        super().quantize_block(ctx)


def test_resumed_run_reports_the_total_calibration_time(tiny_llama_dir: Path, tmp_path: Path, tools) -> None:  # type: ignore[no-untyped-def]
    from qigbench.models.registry import family_for

    batches = tools.batches(tiny_llama_dir)
    model = tools.load(tiny_llama_dir)
    family = family_for(model)
    n_blocks = len(model.get_submodule(family.blocks))
    with pytest.raises(_Interrupt):
        calibrate(model, family, batches, _SlowRTN(die_at=1), parse_format("W4A16g16"),
                  EngineConfig(progress=False, resume_dir=tmp_path))
    report = calibrate(tools.load(tiny_llama_dir), family, batches, _SlowRTN(die_at=-1), parse_format("W4A16g16"),
                       EngineConfig(progress=False, resume_dir=tmp_path))
    assert report.resumed_from_block == 1
    assert report.resumed_seconds >= 0.3  # block 0 of the first run
    assert report.seconds >= report.resumed_seconds + 0.3 * (n_blocks - 1)
