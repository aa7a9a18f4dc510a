"""Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``): windowed-attention ViT, Qwen2 decoder with M-RoPE."""

from __future__ import annotations

from qigbench.models.families._llama_style import LLAMA_STYLE_GROUPS, LLAMA_STYLE_UNCLIPPED
from qigbench.models.families.qwen2vl import QWEN_PIXELS
from qigbench.models.family import ModelFamily
from qigbench.models.specimen import ModelAlias, ShapeSpec, SourceKind, TinySpecimen

FAMILY = ModelFamily(
    name="qwen2_5_vl",
    model_types=("qwen2_5_vl",),
    blocks="model.language_model.layers",
    embed_tokens="model.language_model.embed_tokens",
    groups=LLAMA_STYLE_GROUPS,
    unclipped=LLAMA_STYLE_UNCLIPPED,
    vision=("model.visual",),
    vision_token_config_keys=("image_token_id", "video_token_id"),
    auto_class="AutoModelForImageTextToText",
    aliases=(ModelAlias("qwen2.5vl", "qwen2_5_vl", SourceKind.HF, "Qwen/Qwen2.5-VL-7B-Instruct"),),
    tiny=(TinySpecimen("tiny-qwen2.5vl", build="qigbench.models.tiny.qwen2vl:build_qwen2_5_vl"),),
    shapes=(
        # Qwen/Qwen2.5-VL-7B-Instruct config.json: the same decoder as Qwen2-VL-7B (3584 / 18944 / 28 layers /
        # 28 heads / 4 kv heads / vocab 152064 / rope_theta 1e6 / mrope_section [16, 24, 24]),
        # max_position_embeddings 128000; vision_config depth 32, hidden_size 1280, intermediate_size 3420,
        # num_heads 16, out_hidden_size 3584, window_size 112, fullatt_block_indexes [7, 15, 23, 31], silu.
        ShapeSpec(
            name="qwen2.5vl-7b",
            checkpoint="Qwen/Qwen2.5-VL-7B-Instruct",
            builder="qwen2_5_vl",
            family="qwen2_5_vl",
            text=dict(
                hidden_size=3584,
                intermediate_size=18944,
                num_hidden_layers=28,
                num_attention_heads=28,
                num_key_value_heads=4,
                vocab_size=152064,
                max_position_embeddings=128000,
                rms_norm_eps=1e-6,
                rope_parameters={"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1000000.0},
                tie_word_embeddings=False,
            ),
            vision=dict(
                depth=32,
                hidden_size=1280,
                intermediate_size=3420,
                num_heads=16,
                out_hidden_size=3584,
                patch_size=14,
                spatial_merge_size=2,
                temporal_patch_size=2,
                window_size=112,
                fullatt_block_indexes=[7, 15, 23, 31],
                hidden_act="silu",
            ),
            processor=QWEN_PIXELS,
            vision_depth_key="depth",
            vision_lm_width_keys=("out_hidden_size",),
            image_tokens="256 (as Qwen2-VL)",
        ),
    ),
)
