"""The scaling-group table shared by every Llama/Qwen2-style decoder block (methods.md, "Scale-search groups"),
in data-flow order, and the linears AWQ's clip search leaves alone.

Qwen2-VL, Qwen2.5-VL, LLaVA-OneVision's Qwen2, InternVL's Qwen2/Qwen3 and LLaMA all name their
block modules the same way, so they share this one table instead of repeating it.
"""

from __future__ import annotations

from qigbench.models.family import QK_CLIP_REASON, GroupKind, ScalingGroup, Unclipped

LLAMA_STYLE_GROUPS: tuple[ScalingGroup, ...] = (
    ScalingGroup(
        name="qkv",
        prev_op="input_layernorm",
        linears=("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
        inspect="self_attn",
        kind=GroupKind.ATTENTION,
    ),
    # v_proj's output rows feed o_proj's input columns head by head only when there is one
    # value head per query head; with GQA the shapes differ and the group does not exist.
    ScalingGroup(
        name="o",
        prev_op="self_attn.v_proj",
        linears=("self_attn.o_proj",),
        inspect="self_attn.o_proj",
        token_wise=True,
        kind=GroupKind.ATTENTION,
        requires_matching_shapes=True,
    ),
    ScalingGroup(
        name="gate_up",
        prev_op="post_attention_layernorm",
        linears=("mlp.gate_proj", "mlp.up_proj"),
        inspect="mlp",
        token_wise=True,
        kind=GroupKind.MLP,
    ),
    # down_proj's input is act(gate) * up: scaling up_proj's output rows by 1/s is exact.
    ScalingGroup(
        name="down",
        prev_op="mlp.up_proj",
        linears=("mlp.down_proj",),
        inspect="mlp.down_proj",
        token_wise=True,
        kind=GroupKind.MLP,
    ),
)

#: AWQ's clip search never clips q and k (their error is only seen through RoPE and the softmax)
LLAMA_STYLE_UNCLIPPED: tuple[Unclipped, ...] = (
    Unclipped("self_attn.q_proj", QK_CLIP_REASON),
    Unclipped("self_attn.k_proj", QK_CLIP_REASON),
)
