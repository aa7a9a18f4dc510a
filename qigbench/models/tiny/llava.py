"""tiny-llava: the real LLaVA 1.x classes (CLIP tower, LLaMA decoder, no GQA) at toy size.

28x28 images with 14-pixel patches give 4 patch features (LLaVA's "default" strategy drops CLS),
taken from the tower's second-to-last layer as LLaVA-1.5 does.
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


def build_llava(out: Path) -> None:
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    named = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "image_token": "<image>"}
    tok = train_bpe_tokenizer(
        (*CHATML_SPECIALS, "<image>"), named_tokens=named, chat_template=chat_template(image="<image>\n", video="")
    )
    text = tiny_text_config(
        model_type="llama", vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id
    )
    vision = dict(
        model_type="clip_vision_model",
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=28,
        patch_size=14,
        projection_dim=32,
    )
    config = LlavaConfig(
        text_config=text,
        vision_config=vision,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    model = seeded_init(lambda: LlavaForConditionalGeneration(config))
    image_processor = CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=tok.chat_template,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
