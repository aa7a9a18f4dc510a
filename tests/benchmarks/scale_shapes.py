"""Qwen2-VL-7B's block shape, proportionally narrowed, with random weights (for the scale benchmark).

Qwen2-VL-7B: hidden 3584, intermediate 18944, 28 heads / 4 key-value heads of 128, vocabulary
152064, vision tower depth 32 x 1280 wide (16 heads), 14-pixel patches merged 2x2; the processor
resizes images to at most 12845056 pixels, and the issue measures at 448 x 448 (256 image tokens).
``narrow_qwen2vl_dir(divisor, layers, pixels)`` keeps every ratio (heads of 128, GQA 7:1 where the
head count allows, intermediate / hidden, vocabulary / hidden) and divides the widths, so the
per-block cost *structure* (the widest intermediate vs the hidden width, image tokens per sample)
is the real one while a CPU can run it. When ``qigbench.models.shapes.shape_model_dir`` exists
(the real-shape builder), it is used instead.
"""

from __future__ import annotations

from pathlib import Path

from qigbench.cache import atomic_build
from qigbench.models.tiny.common import MARKER, seeded_init, stamped
from qigbench.models.tiny.qwen2vl import qwen_token_ids, qwen_tokenizer

QWEN2VL_7B = {"hidden": 3584, "intermediate": 18944, "heads": 28, "kv_heads": 4, "vocab": 152064, "head_dim": 128}
GROUP = 128  # W3A16's group size must divide every linear's input


def _round(value: float, multiple: int) -> int:
    return max(multiple, round(value / multiple) * multiple)


def narrow_qwen2vl_dir(cache: Path, divisor: int, layers: int, pixels: int, vision_layers: int = 2) -> Path:
    target = cache / "scale-shapes" / f"qwen2vl-7b-div{divisor}-l{layers}-v{vision_layers}-{pixels}px"

    def build(out: Path) -> None:
        from transformers import (
            Qwen2VLConfig,
            Qwen2VLForConditionalGeneration,
            Qwen2VLImageProcessor,
            Qwen2VLProcessor,
            Qwen2VLVideoProcessor,
        )

        real = QWEN2VL_7B
        hidden = _round(real["hidden"] / divisor, real["head_dim"])
        heads = hidden // real["head_dim"]
        kv = max(1, heads * real["kv_heads"] // real["heads"])
        tok = qwen_tokenizer()
        text = dict(
            hidden_size=hidden,
            intermediate_size=_round(real["intermediate"] / divisor, GROUP),
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv,
            vocab_size=max(len(tok), real["vocab"] // divisor),
            max_position_embeddings=4096,
            tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1000000.0},
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
        vision = dict(depth=vision_layers, embed_dim=256, hidden_size=hidden, num_heads=2, mlp_ratio=4,
                      patch_size=14, spatial_merge_size=2)  # fmt: skip
        config = Qwen2VLConfig(text_config=text, vision_config=vision, **qwen_token_ids(tok))
        model = seeded_init(lambda: Qwen2VLForConditionalGeneration(config))
        px = dict(min_pixels=pixels * pixels, max_pixels=pixels * pixels, patch_size=14, merge_size=2,
                  temporal_patch_size=2)  # fmt: skip
        processor = Qwen2VLProcessor(
            image_processor=Qwen2VLImageProcessor(**px), tokenizer=tok,
            video_processor=Qwen2VLVideoProcessor(**px), chat_template=tok.chat_template,
        )  # fmt: skip
        model.save_pretrained(out)
        processor.save_pretrained(out)

    return atomic_build(target, stamped(build, alias=target.name), marker=MARKER)


def scale_model_dir(cache: Path, divisor: int, layers: int, pixels: int) -> Path:
    """:func:`narrow_qwen2vl_dir` (the model the committed numbers were measured on), or with
    ``QIGBENCH_SCALE_BUILDER=shapes`` the real-shape builder's ``shape:qwen2vl-7b`` (exact widths at
    divisor 1, real vision tower geometry; calibration images are then drawn at ``pixels``)."""
    import os

    if os.environ.get("QIGBENCH_SCALE_BUILDER", "narrow") != "shapes":
        return narrow_qwen2vl_dir(cache, divisor, layers, pixels)
    from qigbench.models.shapes import shape_model_dir

    os.environ["QIGBENCH_SCALE_IMAGE_SIZE"] = str(pixels)  # read by scale_probe.py
    return shape_model_dir("qwen2vl-7b", layers, vision_layers=2, width_divisor=divisor, cache_dir=cache)
