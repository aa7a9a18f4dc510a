"""Issue 20 item 15: every exported checkpoint loads with plain ``from_pretrained(dir)``.

Was: asymmetric (weight-only) checkpoints — W4A16 g128, the paper's weight-only format, W3A16,
W4A16g64 — failed with ``RuntimeError: You set ignore_mismatched_sizes to False`` (compressed-
tensors 0.20 packs the zero point on save but its compressed-on-load placeholder is unpacked:
vllm-project/llm-compressor#1618); only ``load_quantized`` read them. Now they carry
``"dequantize": true`` in their ``quantization_config``, which transformers takes as its load option.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from qigbench.pipeline import QuantizeRequest, QuantizeResult, load_quantized, quantize, save_quantized
from qigbench.quant import parse_format

WEIGHT_ONLY = ["W3A16", "W4A16", "W4A16g64", "W4A16gc", "W8A16", "W2A16", "W4A16-sym"]
WEIGHT_ACTIVATION = ["W8A8", "W4A8"]
PROMPT = ["a packed model must say the same thing"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """``saved(model, fmt)`` -> (result, checkpoint dir); each quantized and saved once per module."""
    root = tmp_path_factory.mktemp("exports")
    done: dict[tuple[str, str], tuple[QuantizeResult, Path]] = {}

    def get(model: str, fmt: str) -> tuple[QuantizeResult, Path]:
        if (model, fmt) not in done:
            result = quantize(QuantizeRequest(model=model, method="rtn", format=fmt, samples=2, progress=False))
            done[model, fmt] = result, save_quantized(result, root / f"{model}-{fmt}")
        return done[model, fmt]

    return get


def _logits(model: torch.nn.Module, tokenizer: object) -> torch.Tensor:
    ids = tokenizer(PROMPT, return_tensors="pt")  # type: ignore[operator]
    with torch.no_grad():
        return model(**ids).logits  # type: ignore[no-any-return]


def _plain(directory: Path, auto_class: str) -> torch.nn.Module:
    """What a user without qigbench does: the Auto class, the folder, nothing else."""
    import transformers

    return getattr(transformers, auto_class).from_pretrained(directory)  # type: ignore[no-any-return]


@pytest.mark.parametrize("fmt", WEIGHT_ONLY)
def test_weight_only_checkpoints_load_plainly_with_the_fake_quant_logits(fmt: str, saved) -> None:  # type: ignore[no-untyped-def]
    result, out = saved("tiny-llama", fmt)
    plain = _plain(out, "AutoModelForCausalLM")
    reference = _logits(result.loaded.model, result.loaded.tokenizer)
    assert torch.equal(_logits(plain, result.loaded.tokenizer), reference)  # bit for bit
    config = json.loads((out / "config.json").read_text())["quantization_config"]
    assert config.get("dequantize", False) is (not parse_format(fmt).weight.symmetric)


def test_a_vlm_checkpoint_loads_plainly_with_the_fake_quant_logits(saved) -> None:  # type: ignore[no-untyped-def]
    result, out = saved("tiny-qwen2vl", "W4A16")
    plain = _plain(out, "AutoModelForImageTextToText")
    tokenizer = result.loaded.tokenizer
    assert torch.equal(_logits(plain, tokenizer), _logits(result.loaded.model, tokenizer))


@pytest.mark.parametrize("fmt", WEIGHT_ACTIVATION)
def test_weight_activation_checkpoints_load_plainly(fmt: str, saved, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Plain transformers runs compressed-tensors' reference activation quantizer (per-token scale
    absmax/127.5 at 8 bits, range [-128, 127]; ours and vLLM's: absmax/127), so its logits are the
    fake-quant model's with that activation rounding, bit for bit, and differ from ours by it alone
    (0.015 of ~4.5 on this model); ``load_quantized`` reproduces ours exactly (README, "Loading a
    saved model")."""
    from compressed_tensors.quantization.lifecycle.forward import fake_quantize as ct_fake_quantize
    from compressed_tensors.quantization.utils.helpers import compute_dynamic_scales_and_zp

    from qigbench.export.compressed import ct_args
    from qigbench.quant import QuantLinear

    result, out = saved("tiny-llama", fmt)
    tokenizer = result.loaded.tokenizer
    plain = _logits(_plain(out, "AutoModelForCausalLM"), tokenizer)
    back = load_quantized(out)
    assert torch.equal(_logits(back.model, tokenizer), _logits(result.loaded.model, tokenizer))

    def ct_rounding(self: QuantLinear, x: torch.Tensor) -> torch.Tensor:
        args = ct_args(self.format.activation, activation=True)  # type: ignore[arg-type]
        scale, zero = compute_dynamic_scales_and_zp(value=x, args=args, module=self)
        return ct_fake_quantize(x=x, scale=scale, zero_point=zero, args=args)  # type: ignore[no-any-return]

    monkeypatch.setattr(QuantLinear, "quantize_input", ct_rounding)
    assert torch.equal(plain, _logits(back.model, tokenizer))  # same weights, CT's activation grid


def test_an_asymmetric_weight_activation_checkpoint_names_the_calls_that_load_it(
    saved, caplog: pytest.LogCaptureFixture  # type: ignore[no-untyped-def]
) -> None:
    """Upstream cannot (the README says so): the save says which calls load it, and they work."""
    with caplog.at_level(logging.WARNING, logger="qigbench"):
        result, out = saved("tiny-llama", "W4A8-asym")
    assert "plain transformers cannot load this checkpoint" in caplog.text, caplog.text
    assert "load_quantized(DIR)" in caplog.text and "CompressedTensorsConfig(dequantize=True)" in caplog.text
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        _plain(out, "AutoModelForCausalLM")  # still true upstream: else drop the note and mark it
    back = load_quantized(out)
    assert torch.equal(_logits(back.model, back.tokenizer), _logits(result.loaded.model, result.loaded.tokenizer))
    from transformers import AutoModelForCausalLM, CompressedTensorsConfig

    AutoModelForCausalLM.from_pretrained(out, quantization_config=CompressedTensorsConfig(dequantize=True))


def test_vllm_side_config_parser_still_reads_the_marked_config(saved) -> None:  # type: ignore[no-untyped-def]
    """compressed-tensors' own parser (what vLLM and llm-compressor use) ignores the load option."""
    from compressed_tensors.quantization import QuantizationConfig

    _, out = saved("tiny-llama", "W4A16")
    raw = json.loads((out / "config.json").read_text())["quantization_config"]
    assert raw["dequantize"] is True
    parsed = QuantizationConfig.model_validate(raw)
    assert parsed.format == "pack-quantized" and parsed.config_groups["group_0"].weights.num_bits == 4
