"""Build a real-shape model (random seeded weights, fewer blocks) into the cache, never download it.

``shape_model_dir("qwen2vl-7b", 2)`` writes, with ``save_pretrained``, a checkpoint whose decoder
blocks, embedding, vision tower and processor have Qwen2-VL-7B's exact shapes but only 2 decoder
blocks. Calibration cost and memory are properties of shapes, so this is how a 7B/26B calibration
is measured on a box that does not hold the checkpoint.

``width_divisor`` narrows the language model (hidden, intermediate, attention and key-value heads)
by the same factor, keeping head_dim (so the rotary sections stay valid) and the GQA ratio; the
vision tower keeps its real width (its output projection follows the language model's width) and
only its depth is reducible. The embedding keeps the real vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from qigbench.cache import atomic_build, cache_root
from qigbench.models.errors import ShapeError, UnknownModelError
from qigbench.models.shapes.data import SHAPES, ShapeSpec
from qigbench.models.specimen import resolve_reference
from qigbench.models.tiny.common import MARKER, stamped

#: Bump when a builder changes, so cached real-shape models are rebuilt rather than silently reused.
SHAPE_BUILD_VERSION = 1
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_TEXT_WIDTH_KEYS = ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads")


@dataclass(frozen=True)
class BuildPlan:
    """What one build writes: final config kwargs and the processor settings."""

    spec: ShapeSpec
    text: dict[str, Any]
    vision: dict[str, Any]
    seed: int
    dtype: torch.dtype


def shape_model_dir(
    name: str,
    layers: int,
    *,
    vision_layers: int | None = None,
    width_divisor: int = 1,
    cache_dir: str | Path | None = None,
    seed: int = 0,
    dtype: str = "float32",
) -> Path:
    """Folder of ``name`` (a key of :data:`SHAPES`) with ``layers`` decoder blocks, built on first use.

    ``vision_layers`` (default: the real depth) sets the vision tower's depth; ``width_divisor``
    narrows the language model (1 = the real widths). Same arguments -> same folder, same weights.
    """
    plan = plan_build(name, layers, vision_layers=vision_layers, width_divisor=width_divisor, seed=seed, dtype=dtype)
    target = shape_model_path(plan, width_divisor, cache_dir)
    return atomic_build(target, stamped(lambda out: build_into(out, plan), alias=target.name), marker=MARKER)


def shape_model_path(plan: BuildPlan, width_divisor: int, cache_dir: str | Path | None = None) -> Path:
    """Where :func:`shape_model_dir` writes ``plan`` (one folder per distinct build)."""
    root = cache_root(cache_dir)
    spec = plan.spec
    vis = f"-v{plan.vision[spec.vision_depth_key]}" if spec.vision_depth_key else ""
    dtype = next(k for k, v in DTYPES.items() if v == plan.dtype)
    layers = plan.text["num_hidden_layers"]
    return root / "shapes" / f"{spec.name}-l{layers}{vis}-w{width_divisor}-s{plan.seed}-{dtype}-b{SHAPE_BUILD_VERSION}"


def plan_build(
    name: str, layers: int, *, vision_layers: int | None = None, width_divisor: int = 1, seed: int = 0,
    dtype: str = "float32",
) -> BuildPlan:
    """Check the request against the real shape and compute the configs to build (no weights)."""
    spec = SHAPES.get(name)
    if spec is None:
        raise UnknownModelError(f"no real shape named {name!r}; known: {', '.join(SHAPES)}")
    if not 1 <= layers <= spec.layers:
        raise ShapeError(f"{name} has {spec.layers} decoder blocks; ask for 1 to {spec.layers}, not {layers}")
    if dtype not in DTYPES:
        raise ShapeError(f"unknown dtype {dtype!r} for a real-shape build; use one of {', '.join(DTYPES)}")
    text = _narrow(spec, width_divisor)
    text["num_hidden_layers"] = layers
    vision = dict(spec.vision)
    if spec.vision_depth_key:
        depth = spec.vision_layers if vision_layers is None else vision_layers
        if not 1 <= depth <= spec.vision_layers:
            raise ShapeError(
                f"{name}'s vision tower has {spec.vision_layers} layers; ask for 1 to {spec.vision_layers}, not {depth}"
            )
        vision[spec.vision_depth_key] = depth
        for key in spec.vision_lm_width_keys:
            vision[key] = text["hidden_size"]
        if "fullatt_block_indexes" in vision:  # Qwen2.5-VL: keep the full-attention blocks that still exist
            vision["fullatt_block_indexes"] = [i for i in vision["fullatt_block_indexes"] if i < depth] or [depth - 1]
    elif vision_layers is not None:
        raise ShapeError(f"{name} is a language model without a vision tower; drop vision_layers")
    return BuildPlan(spec=spec, text=text, vision=vision, seed=seed, dtype=DTYPES[dtype])


def _narrow(spec: ShapeSpec, divisor: int) -> dict[str, Any]:
    text = dict(spec.text)
    if divisor < 1:
        raise ShapeError(f"width_divisor must be >= 1, got {divisor}")
    bad = [k for k in _TEXT_WIDTH_KEYS if text[k] % divisor]
    if bad:
        kv = text["num_key_value_heads"]
        valid = [d for d in range(1, kv + 1) if all(text[k] % d == 0 for k in _TEXT_WIDTH_KEYS)]
        raise ShapeError(
            f"{spec.name}: width_divisor {divisor} does not divide {', '.join(f'{k}={text[k]}' for k in bad)}; "
            f"use one of {valid} (head_dim and the GQA ratio must stay whole)"
        )
    for key in _TEXT_WIDTH_KEYS:
        text[key] //= divisor
    return text


def seeded_build(factory: Callable[[], torch.nn.Module], seed: int, dtype: torch.dtype) -> torch.nn.Module:
    """Construct under a fixed seed with parameters allocated once, directly in ``dtype`` (a 152064 x
    3584 embedding is 2.2 GB in float32: never build it in float32 to cast it afterwards)."""
    previous = torch.get_default_dtype()
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        torch.set_default_dtype(dtype)
        try:
            model = factory()
        finally:
            torch.set_default_dtype(previous)
    return model.eval()


def _token_config(tok: Any, **ids: str) -> dict[str, Any]:
    return {key: tok.convert_tokens_to_ids(token) for key, token in ids.items()}


def _text(plan: BuildPlan, tok: Any) -> dict[str, Any]:
    return {**plan.text, "pad_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id}


@dataclass(frozen=True)
class Parts:
    """A build before any weight exists: the model constructor and the processor (or tokenizer)."""

    model: Callable[[], torch.nn.Module]
    processor: Any


def _qwen(plan: BuildPlan, version: str) -> Parts:
    import transformers

    from qigbench.models.tiny.qwen2vl import qwen_token_ids, qwen_tokenizer

    prefix = {"qwen2_vl": "Qwen2VL", "qwen2_5_vl": "Qwen2_5_VL"}[version]
    tok = qwen_tokenizer()
    config = getattr(transformers, f"{prefix}Config")(
        text_config=_text(plan, tok), vision_config=plan.vision, **qwen_token_ids(tok)
    )
    model = partial(getattr(transformers, f"{prefix}ForConditionalGeneration"), config)
    pixels = dict(plan.spec.processor)
    processor = getattr(transformers, f"{prefix}Processor")(
        image_processor=transformers.Qwen2VLImageProcessor(**pixels),
        tokenizer=tok,
        video_processor=transformers.Qwen2VLVideoProcessor(**pixels),
        chat_template=tok.chat_template,
    )
    return Parts(model, processor)


def _llava_onevision(plan: BuildPlan) -> Parts:
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    from qigbench.models.tiny.llava_onevision import llava_tokenizer

    tok = llava_tokenizer()
    config = LlavaOnevisionConfig(
        text_config=_text(plan, tok),
        vision_config=plan.vision,
        **_token_config(tok, image_token_index="<image>", video_token_index="<video>"),
        **plan.spec.top,
    )
    model = partial(LlavaOnevisionForConditionalGeneration, config)
    p = plan.spec.processor
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(
            size=p["size"], crop_size=p["size"], image_grid_pinpoints=p["image_grid_pinpoints"]
        ),
        tokenizer=tok,
        video_processor=LlavaOnevisionVideoProcessor(size=p["size"]),
        chat_template=tok.chat_template,
        num_image_tokens=p["num_image_tokens"],
        vision_feature_select_strategy=plan.spec.top["vision_feature_select_strategy"],
        vision_aspect_ratio=plan.spec.top["vision_aspect_ratio"],
    )
    return Parts(model, processor)


def _internvl(plan: BuildPlan) -> Parts:
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
    )

    from qigbench.models.tiny.internvl import internvl_tokenizer

    tok = internvl_tokenizer()
    config = InternVLConfig(
        text_config=_text(plan, tok),
        vision_config=plan.vision,
        image_token_id=tok.context_image_token_id,
        tie_word_embeddings=False,
        **plan.spec.top,
    )
    model = partial(InternVLForConditionalGeneration, config)
    p = plan.spec.processor
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(
            size=p["size"], crop_to_patches=True, min_patches=p["min_patches"], max_patches=p["max_patches"]
        ),
        tokenizer=tok,
        video_processor=InternVLVideoProcessor(size=p["size"]),
        chat_template=tok.chat_template,
        image_seq_length=p["image_seq_length"],
    )
    return Parts(model, processor)


def _llama(plan: BuildPlan) -> Parts:
    from transformers import LlamaConfig, LlamaForCausalLM

    from qigbench.models.tiny.llama import llama_tokenizer

    tok = llama_tokenizer()
    config = LlamaConfig(**_text(plan, tok), bos_token_id=tok.bos_token_id)
    return Parts(partial(LlamaForCausalLM, config), tok)


PARTS: Mapping[str, Callable[[BuildPlan], Parts]] = {
    "qwen2_vl": lambda plan: _qwen(plan, "qwen2_vl"),
    "qwen2_5_vl": lambda plan: _qwen(plan, "qwen2_5_vl"),
    "llava_onevision": _llava_onevision,
    "internvl": _internvl,
    "llama": _llama,
}


def parts_for(plan: BuildPlan) -> Parts:
    """The model constructor and processor of ``plan``: a builder of this module (``PARTS``), or the
    ``"module:function"`` a family file names for its own architecture."""
    builder = plan.spec.builder
    make = PARTS.get(builder) or resolve_reference(builder)
    return make(plan)  # type: ignore[no-any-return]


def build_into(out: Path, plan: BuildPlan) -> None:
    """Write ``plan``'s model (seeded random weights) and processor into ``out`` with save_pretrained."""
    parts = parts_for(plan)
    model = seeded_build(parts.model, plan.seed, plan.dtype)
    model.save_pretrained(out)  # type: ignore[operator]
    parts.processor.save_pretrained(out)


def meta_model(plan: BuildPlan) -> torch.nn.Module:
    """``plan``'s model on the meta device: every shape, no memory (counts parameters of a 26B model)."""
    with torch.device("meta"):
        return parts_for(plan).model()
