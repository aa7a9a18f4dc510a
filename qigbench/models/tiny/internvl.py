"""tiny-internvl: the real transformers-native InternVL classes (InternViT, Qwen2 decoder) at toy size.

56x56 tiles, 14-pixel patches and pixel-shuffle downsampling 0.5 give 4 context tokens per
tile (at most 2 tiles plus a thumbnail per image); the processor wraps each image in the named
``<img>`` ... ``</img>`` tokens.
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

_TILE = {"height": 56, "width": 56}


def internvl_tokenizer():  # type: ignore[no-untyped-def]
    """The tiny BPE tokenizer with InternVL's named ``<img>``/``<IMG_CONTEXT>``/``</img>`` tokens."""
    named = {
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "start_image_token": "<img>",
        "end_image_token": "</img>",
        "context_image_token": "<IMG_CONTEXT>",
        "video_token": "<video>",
    }
    return train_bpe_tokenizer(
        (*CHATML_SPECIALS, "<img>", "</img>", "<IMG_CONTEXT>", "<video>"),
        named_tokens=named,
        chat_template=chat_template(image="<IMG_CONTEXT>\n", video="<video>\n"),
    )


def build_internvl(out: Path) -> None:
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
    )

    tok = internvl_tokenizer()
    text = tiny_text_config(
        model_type="qwen2", vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id
    )
    vision = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=[56, 56],
        patch_size=[14, 14],
    )
    config = InternVLConfig(
        text_config=text, vision_config=vision, image_token_id=tok.context_image_token_id, downsample_ratio=0.5
    )
    model = seeded_init(lambda: InternVLForConditionalGeneration(config))
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size=_TILE, crop_to_patches=True, min_patches=1, max_patches=2),
        tokenizer=tok,
        video_processor=InternVLVideoProcessor(size=_TILE),
        chat_template=tok.chat_template,
        image_seq_length=4,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
