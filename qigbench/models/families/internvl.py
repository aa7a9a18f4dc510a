"""InternVL, transformers-native (``InternVLForConditionalGeneration``, the ``*-hf`` checkpoints).

The language model is a Qwen2 or Qwen3 decoder; Qwen3's per-head q/k norms sit *after* q_proj
and k_proj, so the qkv group (which scales their input columns) is unaffected by them.
"""

from __future__ import annotations

from qigbench.models.families._llama_style import LLAMA_STYLE_GROUPS
from qigbench.models.family import ModelFamily

FAMILY = ModelFamily(
    name="internvl",
    model_types=("internvl",),
    blocks="model.language_model.layers",
    embed_tokens="model.language_model.embed_tokens",
    groups=LLAMA_STYLE_GROUPS,
    vision=("model.vision_tower", "model.multi_modal_projector"),
    vision_token_config_keys=("image_token_id",),  # videos are expanded into image context tokens
    auto_class="AutoModelForImageTextToText",
)
