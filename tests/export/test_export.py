"""A quantized tiny model saved as a compressed-tensors checkpoint: compressed-tensors validates and
decompresses it to our weights bit for bit, transformers loads it, load_quantized reproduces the
fake-quant model's logits exactly, and `qigbench eval` runs on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from qigbench.cli import main
from qigbench.export.compressed import checkpoint_files, unpack_weight
from qigbench.models.loading import LoadedModel, load_model
from qigbench.pipeline import RECORD_NAME, QuantizeRequest, load_quantized, quantize, save_quantized
from qigbench.quant import QuantLinear, parse_format

FORMATS = ["W4A16g64", "W4A16", "W3A16", "W8A8", "W4A8"]


@pytest.fixture(scope="module")
def quantized(cache_dir: Path):  # type: ignore[no-untyped-def]
    done: dict[tuple[str, str], object] = {}

    def get(family: str, fmt: str):  # type: ignore[no-untyped-def]
        if (family, fmt) not in done:
            done[family, fmt] = quantize(QuantizeRequest(model=family, method="rtn", format=fmt,
                                                         cache_dir=str(cache_dir), progress=False))
        return done[family, fmt]

    return get


def _logits(loaded: LoadedModel, model: torch.nn.Module | None = None) -> torch.Tensor:
    ids = loaded.tokenizer(["a packed model must say the same thing"], return_tensors="pt")
    with torch.no_grad():
        return (model or loaded.model)(**ids).logits  # type: ignore[no-any-return]


@pytest.mark.parametrize("family", ["tiny-llama", "tiny-qwen2vl"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_packed_checkpoint_round_trips(family: str, fmt: str, quantized, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from compressed_tensors.quantization import QuantizationConfig

    result = quantized(family, fmt)
    out = save_quantized(result, tmp_path / "ct")
    ours = {n: m for n, m in result.loaded.model.named_modules() if isinstance(m, QuantLinear)}
    assert ours, "the method quantized nothing"

    # compressed-tensors' own reading of the config and of every packed tensor
    config = json.loads((out / "config.json").read_text())["quantization_config"]
    qconfig = QuantizationConfig.model_validate(config)
    scheme = qconfig.config_groups["group_0"]
    assert scheme.weights.num_bits == parse_format(fmt).w_bits
    assert (scheme.input_activations is None) == parse_format(fmt).weight_only
    state = load_file(str(out / "model.safetensors"))
    for name, qlinear in ours.items():
        prefix = _checkpoint_prefix(state, name)
        tensors = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".weight")}
        # 2-7 bits: packed into int32 (pack-quantized); 8 bits: int8 codes (int-quantized)
        assert "weight_packed" in tensors or tensors["weight"].dtype == torch.int8, f"{name} was written as floats"
        assert torch.equal(unpack_weight(tensors, parse_format(fmt), qconfig.format), qlinear.weight)
    # what the method left alone stays float and listed under ignore (lm_head, the vision tower)
    assert any(k.endswith("lm_head.weight") for k in state)
    assert "re:^lm_head$" in qconfig.ignore or any("lm_head" in i for i in qconfig.ignore)

    # transformers reads the quantization_config and dequantizes: the same weights, bit for bit
    from transformers import CompressedTensorsConfig

    auto = getattr(__import__("transformers"), result.loaded.family.auto_class)
    plain = auto.from_pretrained(out, dtype=torch.float32, quantization_config=CompressedTensorsConfig(dequantize=True))
    for name, qlinear in ours.items():
        assert torch.equal(plain.get_submodule(name).weight, qlinear.weight), name

    reference = _logits(result.loaded)
    back = load_quantized(out)
    assert sum(isinstance(m, QuantLinear) for m in back.model.modules()) == len(ours)
    assert torch.equal(_logits(back), reference)  # max difference 0
    if parse_format(fmt).weight_only:
        assert torch.equal(_logits(result.loaded, plain), reference)

    record = json.loads((out / RECORD_NAME).read_text())
    assert record["export"]["export"] == "compressed-tensors"
    assert sorted(record["export"]["packed_modules"]) == sorted(ours)


def _checkpoint_prefix(state: dict[str, torch.Tensor], module: str) -> str:
    """Module names and checkpoint keys may differ by a prefix (VLMs in transformers 5)."""
    parts = module.split(".")
    for start in range(len(parts)):
        candidate = ".".join(parts[start:])
        hits = {k[: -len(".weight_scale")] for k in state if k.endswith(".weight_scale")}
        matches = [h for h in hits if h == candidate or h.endswith("." + candidate)]
        if len(matches) == 1:
            return matches[0]
    raise AssertionError(f"{module}: no packed tensors in the checkpoint")


def test_w4_packs_to_about_a_quarter(quantized, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = quantized("tiny-llama", "W4A16")
    packed = save_quantized(result, tmp_path / "ct")
    fake = save_quantized(result, tmp_path / "fake", export="fake-quant")
    state = load_file(str(packed / "model.safetensors"))
    quantized_elems = sum(int(torch.prod(v)) for k, v in state.items() if k.endswith("weight_shape"))
    packed_bytes = sum(v.numel() * v.element_size() for k, v in state.items()
                       if k.endswith(("weight_packed", "weight_scale", "weight_zero_point")))
    # 4 bits per weight + a float32 scale and a 4-bit zero point per 128: 4.28 bits of 16
    assert packed_bytes / (2 * quantized_elems) == pytest.approx((4 + 32 / 128 + 4 / 128) / 16, rel=0.02)
    assert dict(checkpoint_files(packed))["model.safetensors"] < dict(checkpoint_files(fake))["model.safetensors"]


def test_one_sided_group_is_refused_not_changed(quantized, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from qigbench.quant.codes import ExportError

    result = quantized("tiny-llama", "W4A16")
    name, qlinear = next((n, m) for n, m in result.loaded.model.named_modules() if isinstance(m, QuantLinear))
    saved = qlinear.weight.data.clone()
    try:
        qlinear.weight.data[0, :128] = torch.linspace(1.0, 2.0, 128)  # on a grid only with z < 0
        from qigbench.quant import fake_quantize

        qlinear.weight.data[0:1, :128] = fake_quantize(qlinear.weight.data[0:1, :128], qlinear.format.weight)
        with pytest.raises(ExportError, match=rf"{name}.*one side of zero"):
            save_quantized(result, tmp_path / "ct")
    finally:
        qlinear.weight.data.copy_(saved)


def test_cli_saves_packed_and_evaluates(cache_dir: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "q"
    assert main(["quantize", "--model", "tiny-llama", "--method", "rtn", "--format", "W3A16",
                 "--cache-dir", str(cache_dir), "--save", str(out), "--no-progress"]) == 0
    assert json.loads((out / "config.json").read_text())["quantization_config"]["format"] == "pack-quantized"
    assert main(["eval", "--model", str(out), "--tasks", "qig_text_mc", "--limit", "4", "--device", "cpu"]) == 0
    assert "qig_text_mc" in capsys.readouterr().out
    assert load_model("tiny-llama", cache_dir=cache_dir) is not None


@pytest.mark.slow
def test_smollm2_packed_round_trip(quantized, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The real 135M model: W4 g64 linears pack to 4.56 bits per weight and load back exactly (its tied
    49152 x 576 embedding is not quantized and stays float32: a third of the fp32 checkpoint remains)."""
    result = quantized("smollm2-135m", "W4A16g64")
    out = save_quantized(result, tmp_path / "ct")
    state = load_file(str(out / "model.safetensors"))
    elems = sum(int(torch.prod(v)) for k, v in state.items() if k.endswith("weight_shape"))
    packed = sum(v.numel() * v.element_size() for k, v in state.items()
                 if k.endswith(("weight_packed", "weight_scale", "weight_zero_point")))
    assert 8 * packed / elems == pytest.approx(4 + 32 / 64 + 4 / 64, rel=0.01)
    fp32_bytes = 4 * sum(p.numel() for p in result.loaded.model.parameters())
    assert dict(checkpoint_files(out))["model.safetensors"] < 0.35 * fp32_bytes
    assert torch.equal(_logits(load_quantized(out)), _logits(result.loaded))
