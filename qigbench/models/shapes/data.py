"""The real checkpoints' shapes, as data: one :class:`ShapeSpec` per model.

Every number below is copied from the checkpoint's ``config.json`` / ``preprocessor_config.json``
on the Hugging Face hub (named in ``checkpoint``); none of it is downloaded at run time. Values
that could not be checked against a copy of the file while writing this are listed in
``unverified`` (and were taken from transformers' own defaults for that checkpoint, which the
library documents as "the llava-hf/... style configuration").

Only what shapes the compute is kept: widths, head counts, key-value heads, vocabulary, depth,
rotary settings, the vision tower's geometry and the processor's image resolution. Weights are
random (seeded), and the tokenizer is the tiny models' BPE: it has the real special tokens but not
the real vocabulary, so text segments tokenise to different lengths than with the real tokenizer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: how a real-shape model is spelled where a model alias goes: ``shape:NAME@LAYERS...``
PREFIX = "shape:"

# Qwen2-VL / Qwen2.5-VL image processor (preprocessor_config.json of both 7B checkpoints):
# min_pixels 56*56 = 3136, max_pixels 28*28*16384 = 12845056, 14-pixel patches, 2x2 merge, 2 frames.
_QWEN_PIXELS: dict[str, Any] = dict(
    min_pixels=3136, max_pixels=12845056, patch_size=14, merge_size=2, temporal_patch_size=2
)

# LLaVA-OneVision anyres grid: every (h, w) in multiples of 384 from 1x1 to 6x6 tiles
# (config.json image_grid_pinpoints of llava-hf/llava-onevision-qwen2-7b-ov-hf).
_LLAVA_OV_GRID: list[list[int]] = [[384 * i, 384 * j] for i in range(1, 7) for j in range(1, 7)]


@dataclass(frozen=True)
class ShapeSpec:
    """One real checkpoint's compute shape. ``text`` and ``vision`` are config kwargs as the
    builder passes them to transformers; ``processor`` the image processor's resolution settings."""

    name: str
    checkpoint: str  # the hub id these numbers come from
    builder: str  # key of qigbench.models.shapes.build.PARTS
    family: str  # qigbench ModelFamily.name of the built model
    text: Mapping[str, Any]
    vision: Mapping[str, Any] = field(default_factory=dict)
    processor: Mapping[str, Any] = field(default_factory=dict)
    top: Mapping[str, Any] = field(default_factory=dict)  # top-level config kwargs
    vision_depth_key: str | None = None  # "depth" (Qwen) or "num_hidden_layers"
    #: vision-config keys whose value is the language model's width (narrowed with it)
    vision_lm_width_keys: tuple[str, ...] = ()
    image_tokens: str = ""  # image tokens per 448x448 image, in words
    unverified: tuple[str, ...] = ()
    substitution: str = ""  # how the built architecture differs from the real one, if it does

    @property
    def layers(self) -> int:
        return int(self.text["num_hidden_layers"])

    @property
    def vision_layers(self) -> int:
        return int(self.vision[self.vision_depth_key]) if self.vision_depth_key else 0

    @property
    def multimodal(self) -> bool:
        return self.vision_depth_key is not None


SHAPES: dict[str, ShapeSpec] = {}


def _add(spec: ShapeSpec) -> None:
    SHAPES[spec.name] = spec


# Qwen/Qwen2-VL-7B-Instruct config.json: hidden_size 3584, intermediate_size 18944,
# num_hidden_layers 28, num_attention_heads 28, num_key_value_heads 4, vocab_size 152064,
# rope_theta 1000000.0, rope_scaling {type: mrope, mrope_section [16, 24, 24]}, rms_norm_eps 1e-06,
# max_position_embeddings 32768, tie_word_embeddings false; vision_config depth 32, embed_dim 1280,
# mlp_ratio 4, num_heads 16, hidden_size 3584 (merger output), patch_size 14, spatial_merge_size 2.
_add(
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
        processor=_QWEN_PIXELS,
        vision_depth_key="depth",
        vision_lm_width_keys=("hidden_size",),
        image_tokens="256 (448x448 / 14^2 patches / 2x2 merge)",
    )
)

# Qwen/Qwen2.5-VL-7B-Instruct config.json: the same decoder as Qwen2-VL-7B (3584 / 18944 / 28 layers /
# 28 heads / 4 kv heads / vocab 152064 / rope_theta 1e6 / mrope_section [16, 24, 24]),
# max_position_embeddings 128000; vision_config depth 32, hidden_size 1280, intermediate_size 3420,
# num_heads 16, out_hidden_size 3584, window_size 112, fullatt_block_indexes [7, 15, 23, 31], silu.
_add(
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
        processor=_QWEN_PIXELS,
        vision_depth_key="depth",
        vision_lm_width_keys=("out_hidden_size",),
        image_tokens="256 (as Qwen2-VL)",
    )
)

# llava-hf/llava-onevision-qwen2-7b-ov-hf config.json: text_config (Qwen2-7B) hidden_size 3584,
# intermediate_size 18944, 28 layers, 28 heads, 4 kv heads, rope_theta 1e6, vocab_size 152128;
# vision_config SigLIP-so400m-patch14-384 with 26 layers (the last of 27 is dropped): hidden_size 1152,
# intermediate_size 4304, 16 heads, image_size 384, patch_size 14; vision_feature_select_strategy "full",
# vision_feature_layer -1, vision_aspect_ratio anyres_max_9; processor 384x384 tiles, 729 tokens per tile.
_add(
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
        processor=dict(size={"height": 384, "width": 384}, image_grid_pinpoints=_LLAVA_OV_GRID, num_image_tokens=729),
        top=dict(
            image_grid_pinpoints=_LLAVA_OV_GRID,
            vision_feature_select_strategy="full",
            vision_feature_layer=-1,
            vision_aspect_ratio="anyres_max_9",
        ),
        vision_depth_key="num_hidden_layers",
        image_tokens="729 per 384x384 tile; a 448x448 image is a base tile plus a 2x2 anyres grid",
        unverified=("text.vocab_size", "vision.num_hidden_layers"),
    )
)

_INTERNVL_SUBSTITUTION = (
    "InternVL2 is remote code (InternVLChatModel + InternLM2) and cannot be instantiated offline. "
    "Built instead: transformers' native InternVL (model_type internvl: InternViT + pixel-shuffle MLP "
    "projector) with a LLaMA decoder of InternLM2's exact shape. InternLM2's block is LLaMA's "
    "(RMSNorm, SwiGLU, GQA, rotary) except that q, k, v are one fused `wqkv` linear; here they are "
    "three linears with the same total rows, so FLOPs, weights and activations match, and the qkv "
    "group scales all three together as it scales wqkv."
)

# OpenGVLab/InternVL2-8B config.json: llm_config (internlm/internlm2_5-7b-chat) hidden_size 4096,
# intermediate_size 14336, num_hidden_layers 32, num_attention_heads 32, num_key_value_heads 8,
# vocab_size 92553, rope_theta 1000000, rope_scaling {dynamic, factor 2.0}, rms_norm_eps 1e-05,
# max_position_embeddings 32768, bias false; vision_config (InternViT-300M-448px) hidden_size 1024,
# 24 layers, 16 heads, intermediate_size 4096, image_size 448, patch_size 14, qkv_bias true,
# norm_type layer_norm, qk_normalization false; downsample_ratio 0.5 (256 tokens per 448x448 tile),
# min/max_dynamic_patch 1/12, use_thumbnail true, select_layer -1.
_add(
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
    )
)

# OpenGVLab/InternVL2-26B config.json: llm_config (internlm/internlm2-chat-20b) hidden_size 6144,
# intermediate_size 16384, num_hidden_layers 48, num_attention_heads 48, num_key_value_heads 8,
# vocab_size 92553, rope_theta 1000000, rope_scaling {dynamic, factor 3.0}, rms_norm_eps 1e-05;
# vision_config (InternViT-6B-448px-V1-5) hidden_size 3200, 45 layers, 25 heads, intermediate_size
# 12800, qkv_bias false, qk_normalization true, norm_type rms_norm; downsample_ratio 0.5.
_add(
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
    )
)

# meta-llama/Llama-2-7b-hf config.json: hidden_size 4096, intermediate_size 11008, 32 layers, 32 heads,
# 32 key-value heads (no GQA), vocab_size 32000, rope_theta 10000, rms_norm_eps 1e-05,
# max_position_embeddings 4096.
_add(
    ShapeSpec(
        name="llama2-7b",
        checkpoint="meta-llama/Llama-2-7b-hf",
        builder="llama",
        family="llama",
        text=dict(
            hidden_size=4096,
            intermediate_size=11008,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=32,
            vocab_size=32000,
            max_position_embeddings=4096,
            rms_norm_eps=1e-5,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            tie_word_embeddings=False,
        ),
    )
)
