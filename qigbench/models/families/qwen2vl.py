"""Qwen2-VL (``Qwen2VLForConditionalGeneration``): ViT tower + merger, Qwen2 decoder with M-RoPE."""

from __future__ import annotations

from typing import Any

from qigbench.models.families._llama_style import LLAMA_STYLE_GROUPS, LLAMA_STYLE_UNCLIPPED
from qigbench.models.family import ModelFamily
from qigbench.models.specimen import ModelAlias, ShapeSpec, SourceKind, TinySpecimen

# Qwen2-VL / Qwen2.5-VL image processor (preprocessor_config.json of both 7B checkpoints):
# min_pixels 56*56 = 3136, max_pixels 28*28*16384 = 12845056, 14-pixel patches, 2x2 merge, 2 frames.
QWEN_PIXELS: dict[str, Any] = dict(
    min_pixels=3136, max_pixels=12845056, patch_size=14, merge_size=2, temporal_patch_size=2
)

FAMILY = ModelFamily(
    name="qwen2vl",
    model_types=("qwen2_vl",),
    blocks="model.language_model.layers",
    embed_tokens="model.language_model.embed_tokens",
    groups=LLAMA_STYLE_GROUPS,
    unclipped=LLAMA_STYLE_UNCLIPPED,
    vision=("model.visual",),  # the merger (projector) lives inside model.visual
    vision_token_config_keys=("image_token_id", "video_token_id"),
    auto_class="AutoModelForImageTextToText",
    aliases=(ModelAlias("qwen2vl", "qwen2vl", SourceKind.HF, "Qwen/Qwen2-VL-7B-Instruct"),),
    tiny=(TinySpecimen("tiny-qwen2vl", build="qigbench.models.tiny.qwen2vl:build_qwen2vl"),),
    shapes=(
        # Qwen/Qwen2-VL-7B-Instruct config.json: hidden_size 3584, intermediate_size 18944,
        # num_hidden_layers 28, num_attention_heads 28, num_key_value_heads 4, vocab_size 152064,
        # rope_theta 1000000.0, rope_scaling {type: mrope, mrope_section [16, 24, 24]}, rms_norm_eps 1e-06,
        # max_position_embeddings 32768, tie_word_embeddings false; vision_config depth 32, embed_dim 1280,
        # mlp_ratio 4, num_heads 16, hidden_size 3584 (merger output), patch_size 14, spatial_merge_size 2.
        ShapeSpec(
            name="qwen2vl-7b",
            checkpoint="Qwen/Qwen2-VL-7B-Instruct",
            builder="qwen2_vl",
            family="qwen2vl",
            text=dict(
                hidden_size=3584,
                intermediate_size=18944,
                num_hidden_layers=28,
                num_attention_heads=28,
                num_key_value_heads=4,
                vocab_size=152064,
                max_position_embeddings=32768,
                rms_norm_eps=1e-6,
                rope_parameters={"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1000000.0},
                tie_word_embeddings=False,
            ),
            vision=dict(
                depth=32,
                embed_dim=1280,
                hidden_size=3584,
                num_heads=16,
                mlp_ratio=4,
                patch_size=14,
                spatial_merge_size=2,
                temporal_patch_size=2,
            ),
            processor=QWEN_PIXELS,
            vision_depth_key="depth",
            vision_lm_width_keys=("hidden_size",),
            image_tokens="256 (448x448 / 14^2 patches / 2x2 merge)",
        ),
    ),
)
