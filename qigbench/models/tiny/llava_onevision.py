"""tiny-llava-ov: the real LLaVA-OneVision classes (SigLIP tower, Qwen2 decoder with GQA) at toy size.

28x28 tiles with 14-pixel patches give 4 features per tile; one anyres grid point (28x28) means a
base tile plus one high-res tile per image, with LLaVA-OV's newline token after each row.
"""

from __future__ import annotations

from pathlib import Path

from qigbench.models.tiny.common import (
    CHATML_SPECIALS,
    chat_template,
    seeded_init,
    tiny_text_config,
    train_bpe_tokenizer,
)

_TILE = {"height": 28, "width": 28}
_GRID = [[28, 28]]


def llava_tokenizer():  # type: ignore[no-untyped-def]
    """The tiny BPE tokenizer with LLaVA-OV's ``<image>``/``<video>`` tokens and ChatML template."""
    named = {
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "image_token": "<image>",
        "video_token": "<video>",
    }
    return train_bpe_tokenizer(
        (*CHATML_SPECIALS, "<image>", "<video>"),
        named_tokens=named,
        chat_template=chat_template(image="<image>\n", video="<video>\n"),
    )


def build_llava_onevision(out: Path) -> None:
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    tok = llava_tokenizer()
    text = tiny_text_config(
        model_type="qwen2",
        vocab_size=len(tok),
        num_key_value_heads=2,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    vision = dict(
        model_type="siglip_vision_model",
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=28,
        patch_size=14,
        vision_use_head=False,
    )
    config = LlavaOnevisionConfig(
        text_config=text,
        vision_config=vision,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        video_token_index=tok.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=_GRID,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
    )
    model = seeded_init(lambda: LlavaOnevisionForConditionalGeneration(config))
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size=_TILE, crop_size=_TILE, image_grid_pinpoints=_GRID),
        tokenizer=tok,
        video_processor=LlavaOnevisionVideoProcessor(size=_TILE),
        chat_template=tok.chat_template,
        num_image_tokens=4,
        vision_feature_select_strategy="full",
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
