"""tiny-qwen2vl and tiny-qwen2.5vl: the real Qwen2(.5)-VL classes at toy size.

56x56 images with 14-pixel patches and 2x2 merging give 4 image tokens per image. tiny-qwen2vl
has 4 key-value heads (the "o" group exists); tiny-qwen2.5vl uses GQA (2 key-value heads).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qigbench.models.tiny.common import (
    CHATML_SPECIALS,
    chat_template,
    seeded_init,
    tiny_text_config,
    train_bpe_tokenizer,
)

_SPECIALS = (*CHATML_SPECIALS, "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
_NAMED = {
    "eos_token": "<|im_end|>",
    "pad_token": "<|endoftext|>",
    "image_token": "<|image_pad|>",
    "video_token": "<|video_pad|>",
    "vision_start_token": "<|vision_start|>",
    "vision_end_token": "<|vision_end|>",
}
_PIXELS: dict[str, Any] = dict(
    min_pixels=28 * 28, max_pixels=56 * 56, patch_size=14, merge_size=2, temporal_patch_size=2
)
# M-RoPE splits the 8 rotary frequency pairs of a 16-wide head into (temporal, height, width)
_ROPE = {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0}


def qwen_tokenizer():  # type: ignore[no-untyped-def]
    template = chat_template(
        image="<|vision_start|><|image_pad|><|vision_end|>", video="<|vision_start|><|video_pad|><|vision_end|>"
    )
    return train_bpe_tokenizer(_SPECIALS, named_tokens=_NAMED, chat_template=template)


def qwen_token_ids(tok) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    ids = tok.convert_tokens_to_ids
    return dict(
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )


def build_qwen2vl(out: Path) -> None:
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    tok = qwen_tokenizer()
    text = tiny_text_config(
        vocab_size=len(tok), rope_parameters=_ROPE, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id
    )
    vision = dict(depth=2, embed_dim=32, hidden_size=128, num_heads=2, mlp_ratio=2, patch_size=14, spatial_merge_size=2)
    config = Qwen2VLConfig(text_config=text, vision_config=vision, **qwen_token_ids(tok))
    model = seeded_init(lambda: Qwen2VLForConditionalGeneration(config))
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(**_PIXELS),
        tokenizer=tok,
        video_processor=Qwen2VLVideoProcessor(**_PIXELS),
        chat_template=tok.chat_template,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)


def build_qwen2_5_vl(out: Path) -> None:
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    tok = qwen_tokenizer()
    text = tiny_text_config(
        vocab_size=len(tok),
        num_key_value_heads=2,
        rope_parameters=_ROPE,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    vision = dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        out_hidden_size=128,
        num_heads=2,
        patch_size=14,
        spatial_merge_size=2,
        window_size=56,
        fullatt_block_indexes=[1],
    )
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **qwen_token_ids(tok))
    model = seeded_init(lambda: Qwen2_5_VLForConditionalGeneration(config))
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**_PIXELS),
        tokenizer=tok,
        video_processor=Qwen2VLVideoProcessor(**_PIXELS),
        chat_template=tok.chat_template,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
