"""Phi-3 (``Phi3ForCausalLM``, transformers-native ``phi3``): Phi-3-mini, a LLaMA-like decoder whose
attention and MLP projections are fused.

``qkv_proj`` emits ``[q | k | v]`` (``num_attention_heads``, ``num_key_value_heads``,
``num_key_value_heads`` heads of ``head_dim`` rows) and ``gate_up_proj`` emits ``[gate | up]``
(``chunk(2)``: two halves of ``intermediate_size``). Both layouts are data (``fused``), so:

* the "o" group's previous op is the v rows of ``qkv_proj`` — scaled where there is one value head
  per query head (Phi-3-mini: 32 / 32; under GQA the widths differ and "o" is quantized, unscaled);
* the "down" group's previous op is the up half of ``gate_up_proj`` (``down(up * act(gate))``:
  dividing the up rows by ``s`` divides down's input by ``s``), as AutoAWQ scales them;
* AWQ's clip search leaves the q and k rows of ``qkv_proj`` alone and clips its v rows.

Phi-3 defines ``o_proj`` before ``qkv_proj`` (and ``down_proj`` after ``gate_up_proj``): the groups
below are in data-flow order, which is the order every method runs them in.

Text only (``multimodal=False``): calibrated on text chunks. Phi-3.5-vision needs remote code; the
vision-language model with this decoder is Phi-4-multimodal (``phi4_multimodal.py``).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qigbench.models.family import (
    QK_CLIP_REASON,
    FusedLinear,
    FusedPart,
    GroupKind,
    ModelFamily,
    ScalingGroup,
    Unclipped,
)
from qigbench.models.specimen import ModelAlias, ShapeSpec, SourceKind, TinySpecimen

if TYPE_CHECKING:
    from qigbench.models.shapes.build import BuildPlan, Parts

_HEADS, _KV = "num_attention_heads", "num_key_value_heads"

#: the Phi-3 / Phi-4 decoder block (Phi-4-multimodal's is the same module tree)
PHI3_GROUPS: tuple[ScalingGroup, ...] = (
    ScalingGroup(
        name="qkv",
        prev_op="input_layernorm",
        linears=("self_attn.qkv_proj",),
        inspect="self_attn",
        kind=GroupKind.ATTENTION,
    ),
    ScalingGroup(
        name="o",
        prev_op="self_attn.qkv_proj",
        prev_part="v",
        linears=("self_attn.o_proj",),
        inspect="self_attn.o_proj",
        token_wise=True,
        kind=GroupKind.ATTENTION,
        requires_matching_shapes=True,
    ),
    ScalingGroup(
        name="gate_up",
        prev_op="post_attention_layernorm",
        linears=("mlp.gate_up_proj",),
        inspect="mlp",
        token_wise=True,
        kind=GroupKind.MLP,
    ),
    ScalingGroup(
        name="down",
        prev_op="mlp.gate_up_proj",
        prev_part="up",
        linears=("mlp.down_proj",),
        inspect="mlp.down_proj",
        token_wise=True,
        kind=GroupKind.MLP,
    ),
)
PHI3_FUSED: tuple[FusedLinear, ...] = (
    FusedLinear("self_attn.qkv_proj", parts=(FusedPart("q", _HEADS), FusedPart("k", _KV), FusedPart("v", _KV))),
    FusedLinear("mlp.gate_up_proj", parts=(FusedPart("gate", 1), FusedPart("up", 1))),
)
PHI3_UNCLIPPED: tuple[Unclipped, ...] = (Unclipped("self_attn.qkv_proj", QK_CLIP_REASON, parts=("q", "k")),)

#: Phi-3's chat format (tokenizer_config.json of microsoft/Phi-3-mini-4k-instruct), <s> emitted by the template
_TEMPLATE = (
    "{{ '<s>' }}{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def phi3_tokenizer():  # type: ignore[no-untyped-def]
    """The tiny BPE tokenizer with Phi-3's special tokens (LLaMA's three, then the chat markers)."""
    from qigbench.models.tiny.common import train_bpe_tokenizer

    named = {"bos_token": "<s>", "eos_token": "<|endoftext|>", "unk_token": "<unk>", "pad_token": "<|endoftext|>"}
    specials = ("<unk>", "<s>", "</s>", "<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
    return train_bpe_tokenizer(specials, named_tokens=named, chat_template=_TEMPLATE)


def _config(text: dict[str, Any], tok: Any) -> Any:
    from transformers import Phi3Config

    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return Phi3Config(**{**text, **ids})


def build_tiny(out: Path) -> None:
    """tiny-phi3: the real ``Phi3ForCausalLM`` at toy size — 2 blocks, 128 wide, 8 query and 8
    key-value heads of 16 (so "o" is scaled through the v rows of qkv_proj)."""
    from transformers import Phi3ForCausalLM

    from qigbench.models.tiny.common import seeded_init, tiny_text_config

    tok = phi3_tokenizer()
    text = tiny_text_config(vocab_size=len(tok), original_max_position_embeddings=512)
    config = _config(text, tok)
    model = seeded_init(lambda: Phi3ForCausalLM(config))
    model.save_pretrained(out)
    tok.save_pretrained(out)


def shape_parts(plan: BuildPlan) -> Parts:
    """The real-shape build (``shape:phi3-mini``): Phi3ForCausalLM at the plan's config."""
    from transformers import Phi3ForCausalLM

    from qigbench.models.shapes.build import Parts

    tok = phi3_tokenizer()
    return Parts(partial(Phi3ForCausalLM, _config(dict(plan.text), tok)), tok)


FAMILY = ModelFamily(
    name="phi3",
    model_types=("phi3",),
    blocks="model.layers",
    embed_tokens="model.embed_tokens",
    groups=PHI3_GROUPS,
    fused=PHI3_FUSED,
    unclipped=PHI3_UNCLIPPED,
    auto_class="AutoModelForCausalLM",
    multimodal=False,
    aliases=(ModelAlias("phi3", "phi3", SourceKind.HF, "microsoft/Phi-3-mini-4k-instruct", note="Phi-3-mini"),),
    tiny=(TinySpecimen("tiny-phi3", build=f"{__name__}:build_tiny"),),
    shapes=(
        # microsoft/Phi-3-mini-4k-instruct config.json, as transformers' Phi3Config documents it (its
        # defaults are "the microsoft/Phi-3-mini-4k-instruct style configuration"): hidden_size 3072,
        # intermediate_size 8192, num_hidden_layers 32, num_attention_heads 32, num_key_value_heads 32
        # (no GQA), vocab_size 32064, max_position_embeddings 4096, original_max_position_embeddings 4096,
        # rope_theta 10000 (rope_scaling null), rms_norm_eps 1e-05, tie_word_embeddings false. These give
        # 3,821,079,552 parameters, the checkpoint's size. sliding_window 2047 is the checkpoint's value
        # (transformers' default is None), not checked against a copy of the file here.
        ShapeSpec(
            name="phi3-mini",
            checkpoint="microsoft/Phi-3-mini-4k-instruct",
            builder=f"{__name__}:shape_parts",
            family="phi3",
            text=dict(
                hidden_size=3072,
                intermediate_size=8192,
                num_hidden_layers=32,
                num_attention_heads=32,
                num_key_value_heads=32,
                vocab_size=32064,
                max_position_embeddings=4096,
                original_max_position_embeddings=4096,
                rms_norm_eps=1e-5,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                sliding_window=2047,
                tie_word_embeddings=False,
            ),
            unverified=("text.sliding_window",),
        ),
    ),
)
