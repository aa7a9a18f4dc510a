"""Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``): windowed-attention ViT, Qwen2 decoder with M-RoPE."""

from __future__ import annotations

from qigbench.models.families._llama_style import LLAMA_STYLE_GROUPS
from qigbench.models.family import ModelFamily

FAMILY = ModelFamily(
    name="qwen2_5_vl",
    model_types=("qwen2_5_vl",),
    blocks="model.language_model.layers",
    embed_tokens="model.language_model.embed_tokens",
    groups=LLAMA_STYLE_GROUPS,
    vision=("model.visual",),
    vision_token_config_keys=("image_token_id", "video_token_id"),
    auto_class="AutoModelForImageTextToText",
)
