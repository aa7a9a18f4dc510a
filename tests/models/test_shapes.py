"""Real-shape models: their data match the real checkpoints, builds are deterministic, and a narrowed
1-block build of every family loads with from_pretrained and runs the calibration data path."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from qigbench.data.defaults import default_calibration
from qigbench.data.loader import load_calibration
from qigbench.models import load_model
from qigbench.models.aliases import alias_for, resolve_source
from qigbench.models.errors import ShapeError, UnknownModelError
from qigbench.models.registry import family_for, get_blocks
from qigbench.models.shapes import SHAPES, plan_build, shape_model_dir
from qigbench.models.shapes.alias import parse_shape_alias
from qigbench.models.shapes.build import meta_model
from qigbench.tokens import TokenType

# (hidden, intermediate, heads, kv heads, vocab, layers) from each checkpoint's config.json
REAL = {
    "qwen2vl-7b": (3584, 18944, 28, 4, 152064, 28),
    "qwen2.5vl-7b": (3584, 18944, 28, 4, 152064, 28),
    "llava-ov-7b": (3584, 18944, 28, 4, 152128, 28),
    "internvl2-8b": (4096, 14336, 32, 8, 92553, 32),
    "internvl2-26b": (6144, 16384, 48, 8, 92553, 48),
    "llama2-7b": (4096, 11008, 32, 32, 32000, 32),
    "phi3-mini": (3072, 8192, 32, 32, 32064, 32),
    "phi4mm": (3072, 8192, 24, 8, 200064, 32),
}
# (vision width, vision depth) of each tower: Qwen ViT 1280 x 32, SigLIP-so400m 1152 x 26,
# InternViT-300M 1024 x 24, InternViT-6B-V1-5 3200 x 45
REAL_VISION = {
    "qwen2vl-7b": (1280, 32),
    "qwen2.5vl-7b": (1280, 32),
    "llava-ov-7b": (1152, 26),
    "internvl2-8b": (1024, 24),
    "internvl2-26b": (3200, 45),
    "phi4mm": (1152, 27),  # SigLIP-so400m at 448 px
}
# narrowest divisor each family allows (it must divide the key-value heads)
NARROW = {"qwen2vl-7b": 4, "qwen2.5vl-7b": 4, "llava-ov-7b": 4, "internvl2-8b": 8, "internvl2-26b": 8, "llama2-7b": 8,
          "phi3-mini": 8, "phi4mm": 8}


def test_every_real_checkpoint_is_described() -> None:
    assert set(SHAPES) == set(REAL)


@pytest.mark.parametrize("name", sorted(REAL))
def test_shape_data_match_the_real_configs(name: str) -> None:
    t = SHAPES[name].text
    got = (t["hidden_size"], t["intermediate_size"], t["num_attention_heads"], t["num_key_value_heads"],
           t["vocab_size"], t["num_hidden_layers"])
    assert got == REAL[name]
    if name in REAL_VISION:
        v = SHAPES[name].vision
        width = v.get("embed_dim", v.get("hidden_size"))
        assert (width, SHAPES[name].vision_layers) == REAL_VISION[name]


# total parameters of the real checkpoints (the hub's safetensors metadata / model cards)
REAL_PARAMETERS = {
    "qwen2vl-7b": 8_291_375_616,
    "qwen2.5vl-7b": 8_292_166_656,
    "internvl2-8b": 8_075_365_376,  # the LLaMA stand-in for InternLM2 has exactly its parameters
    "internvl2-26b": 25_514_186_112,
    "llama2-7b": 6_738_415_616,
    "phi3-mini": 3_821_079_552,
}
#: Phi-4-multimodal's decoder is Phi-4-mini (3,836,021,760 parameters, tied embeddings); the whole
#: native model adds the image tower and the audio encoder, and the released 5.57B the two LoRA adapters
DECODER_PARAMETERS = {"phi4mm": 3_836_021_760}


@pytest.mark.parametrize("name", sorted(REAL))
def test_full_shape_build_has_the_real_parameter_count(name: str) -> None:
    """The whole model at full depth and width, built on the meta device (no memory)."""
    model = meta_model(plan_build(name, SHAPES[name].layers))
    count = sum(p.numel() for p in model.parameters())
    if name in REAL_PARAMETERS:
        assert count == REAL_PARAMETERS[name]
    elif name in DECODER_PARAMETERS:
        decoder = sum(p.numel() for n, p in model.named_parameters() if ".embed_tokens_extend." not in n)
        assert decoder == DECODER_PARAMETERS[name]
        assert count + 830_000_000 == pytest.approx(5.57e9, rel=1e-3)  # + vision LoRA 369M + speech LoRA 461M
    else:  # llava-ov-7b: the model card rounds to 8.03B
        assert count == pytest.approx(8.03e9, rel=1e-3)


def test_processors_carry_the_real_image_resolution() -> None:
    assert SHAPES["qwen2vl-7b"].processor["min_pixels"] == 56 * 56
    assert SHAPES["qwen2vl-7b"].processor["max_pixels"] == 28 * 28 * 16384
    assert SHAPES["internvl2-8b"].processor["size"] == {"height": 448, "width": 448}
    assert SHAPES["internvl2-26b"].top["downsample_ratio"] == 0.5
    assert SHAPES["llava-ov-7b"].processor["size"] == {"height": 384, "width": 384}
    assert SHAPES["llava-ov-7b"].processor["num_image_tokens"] == (384 // 14) ** 2


def _digest(folder: Path) -> str:
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def test_build_is_deterministic_and_seeded(shape_cache: Path) -> None:
    tmp_path = shape_cache
    first = shape_model_dir("llama2-7b", 1, width_divisor=8, cache_dir=tmp_path / "a")
    again = shape_model_dir("llama2-7b", 1, width_divisor=8, cache_dir=tmp_path / "b")
    other = shape_model_dir("llama2-7b", 1, width_divisor=8, cache_dir=tmp_path / "a", seed=1)
    assert _digest(first) == _digest(again)
    assert _digest(first) != _digest(other)
    assert shape_model_dir("llama2-7b", 1, width_divisor=8, cache_dir=tmp_path / "a") == first  # cached


def test_narrowing_keeps_head_dim_and_gqa_ratio(shape_cache: Path) -> None:
    folder = shape_model_dir("qwen2vl-7b", 1, vision_layers=1, width_divisor=4, cache_dir=shape_cache, dtype="bfloat16")
    from transformers import AutoConfig

    text = AutoConfig.from_pretrained(folder).text_config
    assert (text.hidden_size, text.intermediate_size, text.num_attention_heads, text.num_key_value_heads) == (
        896, 4736, 7, 1
    )
    assert text.hidden_size // text.num_attention_heads == 3584 // 28  # head_dim 128: M-RoPE sections still fit
    assert text.vocab_size == 152064
    assert AutoConfig.from_pretrained(folder).vision_config.hidden_size == 896  # the merger feeds the narrowed LM


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(layers=29), "1 to 28"),
        (dict(layers=1, width_divisor=3), r"use one of \[1, 2, 4\]"),
        (dict(layers=1, vision_layers=33), "vision tower has 32"),
    ],
)
def test_impossible_shapes_are_refused_with_the_fix(kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(ShapeError, match=match):
        shape_model_dir("qwen2vl-7b", **kwargs)


def test_alias_spelling() -> None:
    spelling = "shape:internvl2-26b@4+vision=1+width=8"
    assert parse_shape_alias(spelling).spelling == spelling
    request = parse_shape_alias("shape:qwen2vl-7b")
    assert (request.layers, request.resolved_vision_layers(), request.width_divisor) == (2, 2, 1)
    assert alias_for("shape:qwen2vl-7b@3") is alias_for("shape:qwen2vl-7b")
    with pytest.raises(ShapeError, match="@LAYERS"):
        parse_shape_alias("shape:qwen2vl-7b@two")
    with pytest.raises(UnknownModelError, match="shape:qwen2vl-7b"):
        resolve_source("shape:qwen3vl-7b@2")


@pytest.fixture
def shape_cache(tmp_path: Path) -> Iterator[Path]:
    """One build per test, deleted when the test ends: each keeps the real vocabulary's embedding and
    head (~1 GB at float32), and the six of them left 5.3 GB in pytest's temp folder (issue 20)."""
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


# LLaVA-OV's anyres tiles and InternViT-6B's 3200-wide layer take over a minute on 2 shared cores
# (Phi-4-multimodal: a 1024-wide, 24-block audio encoder beside the decoder, and 545 tokens per image)
_SLOW = {"llava-ov-7b", "internvl2-26b", "phi4mm"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in _SLOW else n for n in sorted(REAL)])
def test_narrowed_one_block_build_runs_the_calibration_path(name: str, shape_cache: Path) -> None:
    spec = SHAPES[name]
    vision = "+vision=1" if spec.multimodal else ""
    loaded = load_model(f"shape:{name}@1{vision}+width={NARROW[name]}", cache_dir=shape_cache)
    assert loaded.family.name == spec.family == family_for(loaded.model).name
    assert len(get_blocks(loaded.model, loaded.family)) == 1
    source = default_calibration(loaded, shape_cache, n=2)
    length = None if spec.multimodal else 32  # text chunks: short; caption pairs: whole
    batch = load_calibration(source, model=loaded, n_samples=2, batch_size=2, max_length=length).batches[0]
    with torch.no_grad():
        # the last 8 positions are enough to check the head: full logits at the real vocabulary are
        # tokens x 152k floats (1.8 GB for LLaVA-OV's ~1,500-token rows)
        logits = loaded.model(**batch.inputs, use_cache=False, logits_to_keep=8).logits
    assert logits.shape[-1] == REAL[name][4]  # the real vocabulary
    assert torch.isfinite(logits).all()
    vision_tokens = int((batch.token_types == TokenType.VISION).sum())
    if spec.family == "internvl":  # every image is resized to one real 448x448 tile: 256 tokens
        assert vision_tokens == 2 * 256
    elif spec.family in ("qwen2vl", "qwen2_5_vl"):  # 64x64 images: min_pixels rounds them to 56x56 = 4 tokens
        assert vision_tokens == 2 * 4
    elif spec.family == "phi4_multimodal":  # 64x64 images: one 448-px crop beside the global view
        assert vision_tokens == 2 * 545
    elif spec.multimodal:  # LLaVA-OV: a 729-token base tile at least
        assert vision_tokens >= 2 * 729
    else:
        assert vision_tokens == 0
