"""Issue 20 item 9: NaN/Inf in a weight is reported with the tensor and causes that fit.

Was: ``weight contains 4 NaN/Inf value(s) ... (a NaN here usually means an fp16 overflow upstream:
try dtype=bfloat16 or float32)`` for a float32 checkpoint, naming no tensor; a NaN in a *bias*
went through silently (exit 0, ``mean_block_error: NaN``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from qigbench.cli import main
from qigbench.models.tiny import ensure_tiny

# module paths in the loaded model (the file names them without ``language_model.``)
DOWN = "model.language_model.layers.0.mlp.down_proj.weight"
BIAS = "model.language_model.layers.1.self_attn.q_proj.bias"
EMBED = "model.language_model.embed_tokens.weight"


def _file_key(name: str) -> str:
    return name.replace("model.language_model.", "model.")


def _damaged(tmp_path: Path, edit: dict[str, object]) -> Path:
    """A copy of tiny-qwen2vl whose safetensors file has ``edit`` applied: a matrix gets the value at
    [0, :3] and [1, 0] (an Inf there when the value is NaN), a vector at [:2]."""
    folder = tmp_path / "damaged"
    shutil.copytree(ensure_tiny("tiny-qwen2vl"), folder)
    weights = load_file(folder / "model.safetensors")
    for name, value in edit.items():
        t = weights[_file_key(name)]
        if t.dim() == 2:
            t[0, :3] = value  # type: ignore[assignment]
            t[1, 0] = float("inf") if value != value else value  # NaN: add one Inf; else the same value
        else:
            t[:2] = value  # type: ignore[assignment]
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def _quantize(folder: Path, method: str, *extra: str) -> list[str]:
    return ["quantize", "--model", str(folder), "--method", method, "--samples", "2", "--no-progress", *extra]


@pytest.mark.parametrize("method", ["rtn", "gptq", "awq"])
def test_a_nan_weight_names_the_tensor_and_the_checkpoint(
    method: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _damaged(tmp_path, {DOWN: float("nan")})
    assert main(_quantize(folder, method)) == 2
    err = capsys.readouterr().err
    assert f"the weight of {DOWN.removesuffix('.weight')} ({DOWN})" in err, err
    assert "4 non-finite value(s) (3 NaN, 1 Inf)" in err and "dtype float32" in err
    assert "decoder block 0" in err and "checkpoint is damaged" in err and "a previous step" in err
    assert "fp16" not in err and "float16" not in err  # a float32 model did not overflow fp16


def test_a_nan_bias_is_an_error_not_a_nan_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Was: exit 0, block_errors [0.062287, NaN]."""
    folder = _damaged(tmp_path, {BIAS: float("nan")})
    assert main(_quantize(folder, "rtn")) == 2
    out = capsys.readouterr()
    assert f"the bias of {BIAS.removesuffix('.bias')} ({BIAS}) has 2 non-finite value(s) (2 NaN)" in out.err, out.err
    assert "decoder block 1" in out.err and "NaN" not in out.out


def test_float16_names_the_overflow_and_the_dtype_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A float32 value past fp16's range becomes Inf when loaded with --dtype float16."""
    folder = _damaged(tmp_path, {DOWN: 1e6})
    assert main(_quantize(folder, "rtn", "--dtype", "float32")) == 0  # finite in float32: it quantizes
    capsys.readouterr()
    assert main(_quantize(folder, "rtn", "--dtype", "float16")) == 2
    err = capsys.readouterr().err
    assert f"({DOWN}) has 4 non-finite value(s) (4 Inf)" in err and "dtype float16" in err, err
    assert "65504" in err and "--dtype bfloat16" in err


def test_a_nan_outside_the_blocks_is_named_before_calibrating(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _damaged(tmp_path, {EMBED: float("nan")})
    assert main(_quantize(folder, "rtn")) == 2
    err = capsys.readouterr().err
    assert f"({EMBED})" in err and "outside its decoder blocks" in err, err


def test_a_nan_made_by_a_step_of_the_run_says_so() -> None:
    """Weights finite at the start of a block and NaN after the method's step: not the checkpoint."""
    from methods.rtn import RTN
    from qigbench.engine.context import BlockContext
    from qigbench.engine.run import EngineConfig, calibrate
    from qigbench.errors import QigbenchError
    from qigbench.models import load_model
    from qigbench.pipeline import QuantizeRequest, calibration_batches
    from qigbench.quant import parse_format

    class Diverges(RTN):
        def quantize_block(self, ctx: BlockContext) -> None:
            if ctx.index == 1:
                ctx.linear("mlp.up_proj").weight.data[0, 0] = float("nan")
            super().quantize_block(ctx)

    loaded = load_model("tiny-qwen2vl")
    request = QuantizeRequest(model="tiny-qwen2vl", method="rtn", format="W3A16", samples=2)
    batches = calibration_batches(request, loaded, Diverges())[0]
    with pytest.raises(QigbenchError) as err:
        calibrate(loaded.model, loaded.family, batches, Diverges(), parse_format("W3A16"), EngineConfig(progress=False))
    message = str(err.value)
    assert "model.language_model.layers.1.mlp.up_proj.weight" in message, message
    assert "(1 NaN)" in message and "finite when rtn started on block 1" in message
    assert "a step of this run produced them" in message and "checkpoint" not in message
    assert torch.float32 == loaded.model.dtype


def test_a_nan_written_by_the_methods_preparation_is_not_blamed_on_the_checkpoint() -> None:
    from methods.rtn import RTN
    from qigbench.engine.contracts import RunContext
    from qigbench.engine.run import EngineConfig, calibrate
    from qigbench.errors import QigbenchError
    from qigbench.models import load_model
    from qigbench.pipeline import QuantizeRequest, calibration_batches
    from qigbench.quant import parse_format

    class PreparesBadly(RTN):
        def prepare(self, run: RunContext) -> None:
            run.model.get_submodule("model.language_model.layers.1.mlp.gate_proj").weight.data[2, 2] = float("-inf")

    loaded = load_model("tiny-qwen2vl")
    request = QuantizeRequest(model="tiny-qwen2vl", method="rtn", format="W3A16", samples=2)
    batches = calibration_batches(request, loaded, RTN())[0]
    with pytest.raises(QigbenchError) as err:
        calibrate(loaded.model, loaded.family, batches, PreparesBadly(), parse_format("W3A16"),
                  EngineConfig(progress=False))
    message = str(err.value)
    assert "(model.language_model.layers.1.mlp.gate_proj.weight) has 1 non-finite value(s) (1 Inf)" in message
    assert "before rtn started on block 1" in message and "a previous step of this run" in message


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("values", [[float("inf"), float("-inf")], [float("nan")], [float("inf")], [60000.0, 60000.0]])
def test_the_fast_check_counts_exactly_what_isfinite_counts(dtype: torch.dtype, values: list[float]) -> None:
    """The one-sum fast path misses nothing (Inf - Inf is NaN) and a float16 sum that overflows is no NaN."""
    from qigbench.engine.finite import count_non_finite

    t = torch.zeros(64, dtype=dtype)
    t[: len(values)] = torch.tensor(values, dtype=dtype)
    found = count_non_finite(t, "x")
    expected = int((~torch.isfinite(t)).sum())
    assert (found.nan + found.inf if found else 0) == expected
