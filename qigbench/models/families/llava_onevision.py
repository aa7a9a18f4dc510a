"""LLaVA-OneVision (``LlavaOnevisionForConditionalGeneration``): SigLIP tower, MLP projector, Qwen2 decoder."""

from __future__ import annotations

from qigbench.models.families._llama_style import LLAMA_STYLE_GROUPS, LLAMA_STYLE_UNCLIPPED
from qigbench.models.family import ModelFamily
from qigbench.models.specimen import ModelAlias, ShapeSpec, SourceKind, TinySpecimen

# LLaVA-OneVision anyres grid: every (h, w) in multiples of 384 from 1x1 to 6x6 tiles
# (config.json image_grid_pinpoints of llava-hf/llava-onevision-qwen2-7b-ov-hf).
_LLAVA_OV_GRID: list[list[int]] = [[384 * i, 384 * j] for i in range(1, 7) for j in range(1, 7)]

FAMILY = ModelFamily(
    name="llava_onevision",
    model_types=("llava_onevision",),
    blocks="model.language_model.layers",
    embed_tokens="model.language_model.embed_tokens",
    groups=LLAMA_STYLE_GROUPS,
    unclipped=LLAMA_STYLE_UNCLIPPED,
    vision=("model.vision_tower", "model.multi_modal_projector"),
    # LLaVA configs call them *_index, not *_id
    vision_token_config_keys=("image_token_index", "video_token_index"),
    auto_class="AutoModelForImageTextToText",
    aliases=(
        ModelAlias("llava-ov", "llava_onevision", SourceKind.HF, "llava-hf/llava-onevision-qwen2-7b-ov-hf"),
    ),
    tiny=(TinySpecimen("tiny-llava-ov", build="qigbench.models.tiny.llava_onevision:build_llava_onevision"),),
    shapes=(
        # llava-hf/llava-onevision-qwen2-7b-ov-hf config.json: text_config (Qwen2-7B) hidden_size 3584,
        # intermediate_size 18944, 28 layers, 28 heads, 4 kv heads, rope_theta 1e6, vocab_size 152128;
        # vision_config SigLIP-so400m-patch14-384 with 26 layers (the last of 27 is dropped): hidden_size 1152,
        # intermediate_size 4304, 16 heads, image_size 384, patch_size 14; vision_feature_select_strategy "full",
        # vision_feature_layer -1, vision_aspect_ratio anyres_max_9; processor 384x384 tiles, 729 tokens per tile.
        ShapeSpec(
            name="llava-ov-7b",
            checkpoint="llava-hf/llava-onevision-qwen2-7b-ov-hf",
            builder="llava_onevision",
            family="llava_onevision",
            text=dict(
                model_type="qwen2",
                hidden_size=3584,
                intermediate_size=18944,
                num_hidden_layers=28,
                num_attention_heads=28,
                num_key_value_heads=4,
                vocab_size=152128,
                max_position_embeddings=32768,
                rms_norm_eps=1e-6,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                tie_word_embeddings=False,
            ),
            vision=dict(
                model_type="siglip_vision_model",
                hidden_size=1152,
                intermediate_size=4304,
                num_hidden_layers=26,
                num_attention_heads=16,
                image_size=384,
                patch_size=14,
                vision_use_head=False,
            ),
            processor=dict(
                size={"height": 384, "width": 384}, image_grid_pinpoints=_LLAVA_OV_GRID, num_image_tokens=729
            ),
            top=dict(
                image_grid_pinpoints=_LLAVA_OV_GRID,
                vision_feature_select_strategy="full",
                vision_feature_layer=-1,
                vision_aspect_ratio="anyres_max_9",
            ),
            vision_depth_key="num_hidden_layers",
            image_tokens="729 per 384x384 tile; a 448x448 image is a base tile plus a 2x2 anyres grid",
            unverified=("text.vocab_size", "vision.num_hidden_layers"),
        ),
    ),
)
