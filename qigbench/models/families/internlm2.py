"""InternVL2 (``InternVLChatModel``, remote code) with its InternLM2 language model.

InternLM2 names its block modules differently and fuses q, k and v into one ``wqkv`` linear,
whose rows interleave q, k and v per key-value group. The "o" group therefore has no clean
previous op (v is a strided slice of ``wqkv``'s rows, which emits more channels than ``wo``
takes): it is described, as under GQA elsewhere, so ``wo`` is quantized and MBQ finds the
attention output, but it is never scaled.

The model only loads with ``trust_remote_code=True``; its image context token
(``<IMG_CONTEXT>``) is not stored in the config, so it is named for token classification in
``vision_token_strings``. ``internvl_chat`` is also the
model_type of InternVL2-1B/2B/4B, whose language models are Qwen2/InternLM2-1.8B/Phi-3:
``llm_model_type`` makes the registry refuse anything but an InternLM2 language model.
"""

from __future__ import annotations

from qigbench.models.family import GroupKind, ModelFamily, ScalingGroup

FAMILY = ModelFamily(
    name="internlm2",
    model_types=("internvl_chat",),
    blocks="language_model.model.layers",
    embed_tokens="language_model.model.tok_embeddings",
    groups=(
        ScalingGroup(
            name="qkv",
            prev_op="attention_norm",
            linears=("attention.wqkv",),
            inspect="attention",
            kind=GroupKind.ATTENTION,
        ),
        ScalingGroup(
            name="o",
            prev_op="attention.wqkv",
            linears=("attention.wo",),
            inspect="attention.wo",
            kind=GroupKind.ATTENTION,
            requires_matching_shapes=True,
        ),
        ScalingGroup(
            name="gate_up",
            prev_op="ffn_norm",
            linears=("feed_forward.w1", "feed_forward.w3"),  # w1 = gate, w3 = up
            inspect="feed_forward",
            kind=GroupKind.MLP,
        ),
        ScalingGroup(
            name="down",
            prev_op="feed_forward.w3",
            linears=("feed_forward.w2",),
            inspect="feed_forward.w2",
            kind=GroupKind.MLP,
        ),
    ),
    vision=("vision_model", "mlp1"),
    auto_class="AutoModel",
    vision_token_strings=("<IMG_CONTEXT>",),
    requires_trust_remote_code=True,
    llm_model_type="internlm2",
)
