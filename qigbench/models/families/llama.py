"""LLaMA (``LlamaForCausalLM``): the paper's LLaMA-2 extension and SmolLM2 (same architecture)."""

from __future__ import annotations

from qigbench.models.families._llama_style import LLAMA_STYLE_GROUPS
from qigbench.models.family import ModelFamily

FAMILY = ModelFamily(
    name="llama",
    model_types=("llama",),
    blocks="model.layers",
    embed_tokens="model.embed_tokens",
    groups=LLAMA_STYLE_GROUPS,
    auto_class="AutoModelForCausalLM",
    multimodal=False,
)
