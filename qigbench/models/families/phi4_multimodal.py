"""Phi-4-multimodal (``Phi4MultimodalForCausalLM``, transformers-native ``phi4_multimodal``): a
SigLIP image tower and projector, a conformer audio encoder, and the Phi-3/Phi-4 fused decoder.

What this family covers: **vision + text through the base decoder weights.** The decoder blocks
are Phi-3's module tree (fused ``qkv_proj`` and ``gate_up_proj``, see ``phi3.py``), so they share
its groups, fused layouts and clip rule; image placeholder tokens (``vision_config.image_token_id``)
are vision tokens; calibration sets are image + caption pairs through the real processor.

What it does not cover:

* **the LoRA adapters.** The released checkpoint is the Phi-4-mini decoder plus a vision LoRA
  (rank 256) and a speech LoRA (rank 320) on its linears; the transformers-native model keeps them
  as PEFT adapters (``model.load_adapter(..., adapter_name="vision")``). What is quantized is the
  base linear of each block: a model run with a vision adapter on top of the quantized base was not
  calibrated as a whole. To quantize the vision-adapted model, merge the adapter into the base
  weights first (``merge_and_unload``), save, and quantize that folder (not tried here: no weights
  can be downloaded on this machine);
* **audio.** The audio encoder and its projections (``model.embed_tokens_extend.audio_embed``) sit
  outside the decoder blocks and stay in full precision, like the image tower; no calibration set
  here has audio, and audio placeholder tokens would count as text;
* the hub's ``main`` branch of microsoft/Phi-4-multimodal-instruct is the remote-code ``phi4mm``
  model (``Phi4MMForCausalLM``, LoRA layers inside the modules): this family describes the
  transformers-native conversion, ``model_type: phi4_multimodal``.

The real checkpoint uses grouped-query attention (24 query / 8 key-value heads), so its "o" group
is quantized but not scaled; "down" is scaled through the up half of ``gate_up_proj``. The tiny
specimen keeps GQA (8 / 2 heads).

The processor expands every image to at least 545 placeholder tokens (a 448-px global view of
16x16 features plus separators and one or more 448-px crops), whatever the image's size: the tiny
specimen uses the real 448-px, 14-px-patch geometry with a 32-wide, 2-layer tower, and a
calibration row of the default 64-px synthetic set is ~560 tokens before its answer
(``TinySpecimen.min_length``).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qigbench.models.families.phi3 import PHI3_FUSED, PHI3_GROUPS, PHI3_UNCLIPPED
from qigbench.models.family import ModelFamily
from qigbench.models.specimen import ModelAlias, ShapeSpec, SourceKind, TinySpecimen

if TYPE_CHECKING:
    from qigbench.models.shapes.build import BuildPlan, Parts

#: Phi-4's chat format (no newline after the role markers); one image / audio placeholder per item
_TEMPLATE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<|image|>{% elif c['type'] == 'audio' %}<|audio|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
# "<|endoftext|>" (eos, pad) is not id 0: Phi4MultimodalConfig replaces a falsy eos_token_id by the real
# model's [199999, 200020], outside a tiny vocabulary
_SPECIALS = ("<|system|>", "<|endoftext|>", "<|user|>", "<|assistant|>", "<|end|>", "<|image|>", "<|audio|>")


def phi4mm_tokenizer():  # type: ignore[no-untyped-def]
    """The tiny BPE tokenizer with Phi-4's chat markers and the named image / audio placeholders the
    processor looks up (``tokenizer.image_token``, ``tokenizer.audio_token``)."""
    from qigbench.models.tiny.common import train_bpe_tokenizer

    named = {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "image_token": "<|image|>",
             "audio_token": "<|audio|>"}  # fmt: skip
    return train_bpe_tokenizer(_SPECIALS, named_tokens=named, chat_template=_TEMPLATE)


def _config(text: dict[str, Any], vision: dict[str, Any], audio: dict[str, Any], tok: Any) -> Any:
    from transformers import Phi4MultimodalConfig

    ids = dict(bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return Phi4MultimodalConfig(
        **{**text, **ids},
        vision_config={**vision, "image_token_id": tok.image_token_id},
        audio_config={**audio, "audio_token_id": tok.audio_token_id},
    )


def _processor(tok: Any, **image: Any) -> Any:
    """The real processor; its image processor's defaults are the real settings (448-px crops,
    14-px patches, up to 36 crops)."""
    from transformers import Phi4MultimodalFeatureExtractor, Phi4MultimodalImageProcessor, Phi4MultimodalProcessor

    return Phi4MultimodalProcessor(
        image_processor=Phi4MultimodalImageProcessor(**image),
        audio_processor=Phi4MultimodalFeatureExtractor(),
        tokenizer=tok,
        chat_template=tok.chat_template,
    )


#: the tiny tower: SigLIP's real 448-px / 14-px geometry (the processor's token count assumes it), 32 wide
_TINY_VISION: dict[str, Any] = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=448, patch_size=14,
    crop_size=448,
)  # fmt: skip
_TINY_AUDIO: dict[str, Any] = dict(
    hidden_size=32, intermediate_size=64, num_blocks=1, num_attention_heads=2, ext_pw_out_channel=32,
    depthwise_separable_out_channel=32, nemo_conv_channels=32,
)  # fmt: skip


def build_tiny(out: Path) -> None:
    """tiny-phi4mm: the real ``Phi4MultimodalForCausalLM`` and processor at toy size — 2 blocks,
    128 wide, 8 query / 2 key-value heads (GQA, as the real model), partial rotary 0.75, tied
    embeddings; a 2-layer, 32-wide image tower and a 1-block audio encoder."""
    from transformers import Phi4MultimodalForCausalLM

    from qigbench.models.tiny.common import seeded_init, tiny_text_config

    tok = phi4mm_tokenizer()
    text = tiny_text_config(
        vocab_size=len(tok),
        num_key_value_heads=2,
        max_position_embeddings=2048,
        original_max_position_embeddings=2048,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.75},
    )
    config = _config(text, _TINY_VISION, _TINY_AUDIO, tok)
    model = seeded_init(lambda: Phi4MultimodalForCausalLM(config))
    model.save_pretrained(out)
    _processor(tok).save_pretrained(out)


def shape_parts(plan: BuildPlan) -> Parts:
    """The real-shape build (``shape:phi4mm``): the native model at the plan's config, the real
    image tower geometry and the audio encoder at transformers' Phi-4-multimodal defaults."""
    from transformers import Phi4MultimodalForCausalLM

    from qigbench.models.shapes.build import Parts

    tok = phi4mm_tokenizer()
    config = _config(dict(plan.text), dict(plan.vision), dict(plan.spec.top.get("audio_config", {})), tok)
    return Parts(partial(Phi4MultimodalForCausalLM, config), _processor(tok, **plan.spec.processor))


FAMILY = ModelFamily(
    name="phi4_multimodal",
    model_types=("phi4_multimodal",),
    blocks="model.layers",
    embed_tokens="model.embed_tokens",
    groups=PHI3_GROUPS,
    fused=PHI3_FUSED,
    unclipped=PHI3_UNCLIPPED,
    # the image tower and projector (the audio encoder beside it is never quantized either)
    vision=("model.embed_tokens_extend.image_embed",),
    vision_token_config_keys=("vision_config.image_token_id",),
    auto_class="AutoModelForCausalLM",
    aliases=(
        ModelAlias(
            "phi4mm", "phi4_multimodal", SourceKind.HF, "microsoft/Phi-4-multimodal-instruct",
            note="base decoder + vision (no LoRA adapters, no audio); needs the transformers-native conversion",
        ),
    ),
    tiny=(TinySpecimen("tiny-phi4mm", build=f"{__name__}:build_tiny", min_length=560),),
    shapes=(
        # microsoft/Phi-4-multimodal-instruct config.json (the remote-code phi4mm config, as quoted by
        # mlx-vlm's phi4mm port and by other projects' test fixtures; not read from the hub here): the
        # Phi-4-mini decoder, hidden_size 3072, intermediate_size 8192, num_hidden_layers 32,
        # num_attention_heads 24, num_key_value_heads 8 (head_dim 128), vocab_size 200064,
        # max_position_embeddings 131072, original_max_position_embeddings 4096, rms_norm_eps 1e-05,
        # partial_rotary_factor 0.75, rope_theta 10000, tie_word_embeddings true (3,836,021,760 decoder
        # parameters). transformers' Phi4MultimodalConfig defaults say 32 heads: they do not match the
        # checkpoint. Its rope is longrope (48 short / long factors): frequencies, not shapes, so the
        # build uses the default rope. Image tower (embd_layer.image_embd_layer): SigLIP-so400m,
        # hidden 1152, intermediate 4304, 27 layers, 16 heads, crop_size 448, patch 14, feature layer
        # -2 (transformers' Phi4MultimodalVisionConfig defaults, documented as this checkpoint's);
        # processor 448-px crops, dynamic_hd 36. Audio encoder: transformers' Phi4MultimodalAudioConfig
        # defaults (1024 wide, 24 conformer blocks, 16 heads).
        ShapeSpec(
            name="phi4mm",
            checkpoint="microsoft/Phi-4-multimodal-instruct",
            builder=f"{__name__}:shape_parts",
            family="phi4_multimodal",
            text=dict(
                hidden_size=3072,
                intermediate_size=8192,
                num_hidden_layers=32,
                num_attention_heads=24,
                num_key_value_heads=8,
                vocab_size=200064,
                max_position_embeddings=131072,
                original_max_position_embeddings=4096,
                rms_norm_eps=1e-5,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.75},
                tie_word_embeddings=True,
            ),
            vision=dict(
                hidden_size=1152,
                intermediate_size=4304,
                num_hidden_layers=27,
                num_attention_heads=16,
                image_size=448,
                patch_size=14,
                crop_size=448,
                feature_layer=-2,
            ),
            processor=dict(size={"height": 448, "width": 448}, patch_size=14, dynamic_hd=36),
            vision_depth_key="num_hidden_layers",
            image_tokens="545 for a 448x448 image (256 global + 16 separators + 1 + 256 + 16 for one crop)",
            unverified=("text.num_attention_heads", "text.num_key_value_heads", "text.tie_word_embeddings"),
            substitution=(
                "The released checkpoint's vision and speech LoRA adapters are not built (base decoder only); "
                "longrope's frequency factors are replaced by the default rope (same shapes)."
            ),
        ),
    ),
)
