"""InternVL, transformers-native (``InternVLForConditionalGeneration``, the ``*-hf`` checkpoints).

The language model is a Qwen2 or Qwen3 decoder; Qwen3's per-head q/k norms sit *after* q_proj
and k_proj, so the qkv group (which scales their input columns) is unaffected by them.

The real shapes of InternVL2-8B and -26B are built with this family's classes (their own
InternLM2 code is remote; see the substitution note below and ``internlm2.py``).
"""

from __future__ import annotations

from qigbench.models.families._llama_style import LLAMA_STYLE_GROUPS, LLAMA_STYLE_UNCLIPPED
from qigbench.models.family import ModelFamily
from qigbench.models.specimen import ModelAlias, ShapeSpec, SourceKind, TinySpecimen

_INTERNVL_SUBSTITUTION = (
    "InternVL2 is remote code (InternVLChatModel + InternLM2) and cannot be instantiated offline. "
    "Built instead: transformers' native InternVL (model_type internvl: InternViT + pixel-shuffle MLP "
    "projector) with a LLaMA decoder of InternLM2's exact shape. InternLM2's block is LLaMA's "
    "(RMSNorm, SwiGLU, GQA, rotary) except that q, k, v are one fused `wqkv` linear; here they are "
    "three linears with the same total rows, so FLOPs, weights and activations match, and the qkv "
    "group scales all three together as it scales wqkv."
)

FAMILY = ModelFamily(
    name="internvl",
    model_types=("internvl",),
    blocks="model.language_model.layers",
    embed_tokens="model.language_model.embed_tokens",
    groups=LLAMA_STYLE_GROUPS,
    unclipped=LLAMA_STYLE_UNCLIPPED,
    vision=("model.vision_tower", "model.multi_modal_projector"),
    vision_token_config_keys=("image_token_id",),  # videos are expanded into image context tokens
    auto_class="AutoModelForImageTextToText",
    aliases=(ModelAlias("internvl", "internvl", SourceKind.HF, "OpenGVLab/InternVL3-8B-hf"),),
    tiny=(TinySpecimen("tiny-internvl", build="qigbench.models.tiny.internvl:build_internvl"),),
    shapes=(
        # OpenGVLab/InternVL2-8B config.json: llm_config (internlm/internlm2_5-7b-chat) hidden_size 4096,
        # intermediate_size 14336, num_hidden_layers 32, num_attention_heads 32, num_key_value_heads 8,
        # vocab_size 92553, rope_theta 1000000, rope_scaling {dynamic, factor 2.0}, rms_norm_eps 1e-05,
        # max_position_embeddings 32768, bias false; vision_config (InternViT-300M-448px) hidden_size 1024,
        # 24 layers, 16 heads, intermediate_size 4096, image_size 448, patch_size 14, qkv_bias true,
        # norm_type layer_norm, qk_normalization false; downsample_ratio 0.5 (256 tokens per 448x448 tile),
        # min/max_dynamic_patch 1/12, use_thumbnail true, select_layer -1.
        ShapeSpec(
            name="internvl2-8b",
            checkpoint="OpenGVLab/InternVL2-8B",
            builder="internvl",
            family="internvl",
            text=dict(
                model_type="llama",
                hidden_size=4096,
                intermediate_size=14336,
                num_hidden_layers=32,
                num_attention_heads=32,
                num_key_value_heads=8,
                vocab_size=92553,
                max_position_embeddings=32768,
                rms_norm_eps=1e-5,
                rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1000000.0},
                attention_bias=False,
                tie_word_embeddings=False,
            ),
            vision=dict(
                hidden_size=1024,
                num_hidden_layers=24,
                num_attention_heads=16,
                intermediate_size=4096,
                image_size=[448, 448],
                patch_size=[14, 14],
                attention_bias=True,
                use_qk_norm=False,
                norm_type="layer_norm",
            ),
            processor=dict(size={"height": 448, "width": 448}, min_patches=1, max_patches=12, image_seq_length=256),
            top=dict(downsample_ratio=0.5, vision_feature_layer=-1, vision_feature_select_strategy="default"),
            vision_depth_key="num_hidden_layers",
            image_tokens="256 per 448x448 tile (1 to 12 tiles plus a thumbnail)",
            substitution=_INTERNVL_SUBSTITUTION,
        ),
        # OpenGVLab/InternVL2-26B config.json: llm_config (internlm/internlm2-chat-20b) hidden_size 6144,
        # intermediate_size 16384, num_hidden_layers 48, num_attention_heads 48, num_key_value_heads 8,
        # vocab_size 92553, rope_theta 1000000, rope_scaling {dynamic, factor 3.0}, rms_norm_eps 1e-05;
        # vision_config (InternViT-6B-448px-V1-5) hidden_size 3200, 45 layers, 25 heads, intermediate_size
        # 12800, qkv_bias false, qk_normalization true, norm_type rms_norm; downsample_ratio 0.5.
        ShapeSpec(
            name="internvl2-26b",
            checkpoint="OpenGVLab/InternVL2-26B",
            builder="internvl",
            family="internvl",
            text=dict(
                model_type="llama",
                hidden_size=6144,
                intermediate_size=16384,
                num_hidden_layers=48,
                num_attention_heads=48,
                num_key_value_heads=8,
                vocab_size=92553,
                max_position_embeddings=32768,
                rms_norm_eps=1e-5,
                rope_parameters={"rope_type": "dynamic", "factor": 3.0, "rope_theta": 1000000.0},
                attention_bias=False,
                tie_word_embeddings=False,
            ),
            vision=dict(
                hidden_size=3200,
                num_hidden_layers=45,
                num_attention_heads=25,
                intermediate_size=12800,
                image_size=[448, 448],
                patch_size=[14, 14],
                attention_bias=False,
                use_qk_norm=True,
                norm_type="rms_norm",
            ),
            processor=dict(size={"height": 448, "width": 448}, min_patches=1, max_patches=12, image_seq_length=256),
            top=dict(downsample_ratio=0.5, vision_feature_layer=-1, vision_feature_select_strategy="default"),
            vision_depth_key="num_hidden_layers",
            image_tokens="256 per 448x448 tile (1 to 12 tiles plus a thumbnail)",
            substitution=_INTERNVL_SUBSTITUTION,
        ),
    ),
)
