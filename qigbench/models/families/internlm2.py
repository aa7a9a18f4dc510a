"""InternVL2 (``InternVLChatModel``, remote code) with its InternLM2 language model.

InternLM2 names its block modules differently and fuses q, k and v into one ``wqkv`` linear,
whose rows interleave q, k and v per key-value group: ``[q_0 | k_0 | v_0 | q_1 | k_1 | v_1 ...]``,
each group holding ``heads / kv_heads`` query heads and one key and one value head. That layout is
described as data (``fused``), so the "o" group's previous op is the v rows of ``wqkv`` (a strided
slice: one run per key-value group) and AWQ's clip search leaves exactly the q and k rows alone.
Every InternLM2 checkpoint uses grouped-query attention (InternVL2-8B: 32 query / 8 key-value
heads; -26B: 48 / 8), where v emits fewer channels than ``wo`` takes: "o" is then quantized and
read by MBQ, but never scaled (the GQA rule).

The model only loads with ``trust_remote_code=True``; its image context token
(``<IMG_CONTEXT>``) is not stored in the config, so it is named for token classification in
``vision_token_strings``. ``internvl_chat`` is also the
model_type of InternVL2-1B/2B/4B, whose language models are Qwen2/InternLM2-1.8B/Phi-3:
``llm_model_type`` makes the registry refuse anything but an InternLM2 language model.
The real shapes of InternVL2-8B/-26B are built as transformers-native InternVL (``internvl.py``),
and the every-family tests run this family on an InternLM2-shaped mock (``tests/models/internlm2_mock.py``).
"""

from __future__ import annotations

from qigbench.models.family import (
    QK_CLIP_REASON,
    FusedLinear,
    FusedPart,
    GroupKind,
    ModelFamily,
    ScalingGroup,
    Unclipped,
)
from qigbench.models.specimen import ModelAlias, SourceKind

_HEADS, _KV = "num_attention_heads", "num_key_value_heads"

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
            prev_part="v",
            linears=("attention.wo",),
            inspect="attention.wo",
            token_wise=True,
            kind=GroupKind.ATTENTION,
            requires_matching_shapes=True,
        ),
        ScalingGroup(
            name="gate_up",
            prev_op="ffn_norm",
            linears=("feed_forward.w1", "feed_forward.w3"),  # w1 = gate, w3 = up
            inspect="feed_forward",
            token_wise=True,
            kind=GroupKind.MLP,
        ),
        ScalingGroup(
            name="down",
            prev_op="feed_forward.w3",
            linears=("feed_forward.w2",),
            inspect="feed_forward.w2",
            token_wise=True,
            kind=GroupKind.MLP,
        ),
    ),
    fused=(
        FusedLinear(
            "attention.wqkv",
            parts=(FusedPart("q", _HEADS), FusedPart("k", _KV), FusedPart("v", _KV)),
            interleave=_KV,
        ),
    ),
    unclipped=(Unclipped("attention.wqkv", QK_CLIP_REASON, parts=("q", "k")),),
    vision=("vision_model", "mlp1"),
    auto_class="AutoModel",
    vision_token_strings=("<IMG_CONTEXT>",),
    requires_trust_remote_code=True,
    llm_model_type="internlm2",
    text_config="llm_config",
    aliases=(
        ModelAlias(
            "internvl2", "internlm2", SourceKind.HF, "OpenGVLab/InternVL2-8B", trust_remote_code=True,
            note="paper's model",
        ),
        ModelAlias("internvl2-26b", "internlm2", SourceKind.HF, "OpenGVLab/InternVL2-26B", trust_remote_code=True),
    ),
)
