"""LLaVA-OneVision (``LlavaOnevisionForConditionalGeneration``): SigLIP tower, MLP projector, Qwen2 decoder."""

from __future__ import annotations

from qigbench.models.families._llama_style import LLAMA_STYLE_GROUPS
from qigbench.models.family import ModelFamily

FAMILY = ModelFamily(
    name="llava_onevision",
    model_types=("llava_onevision",),
    blocks="model.language_model.layers",
    embed_tokens="model.language_model.embed_tokens",
    groups=LLAMA_STYLE_GROUPS,
    vision=("model.vision_tower", "model.multi_modal_projector"),
    # LLaVA configs call them *_index, not *_id
    vision_token_config_keys=("image_token_index", "video_token_index"),
    auto_class="AutoModelForImageTextToText",
)
