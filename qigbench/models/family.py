"""How an architecture family is described: as data, never as if/elif on class names.

A :class:`ModelFamily` says where the language decoder blocks live, which modules are the
vision tower and projector, and how each block splits into *scaling groups* (AWQ-style
channel-wise equalisation): the previous op that absorbs ``1/s``, the linears that are scaled
by ``s``, and the module whose output is compared during the search.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal


class GroupKind(str, Enum):
    ATTENTION = "attention"  # MBQ uses the attention gradient ratio for these
    MLP = "mlp"  # ... and the MLP ratio for these
    #: a linear of the block that no scaling group covers: quantized on its own, never scaled
    LINEAR = "linear"


@dataclass(frozen=True)
class ScalingGroup:
    """One channel-wise equalisation group of a decoder block (paths relative to the block)."""

    name: str  # "qkv", "o", "gate_up", "down"
    prev_op: str  # e.g. "input_layernorm" (a norm: scale its weight) or "self_attn.v_proj" (a linear: scale its rows)
    linears: tuple[str, ...]  # e.g. ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
    inspect: str  # module whose output is compared, e.g. "self_attn"
    kind: GroupKind
    #: scaled only where prev_op emits as many channels as the linears take (the "o" group: v_proj's
    #: out dim equals o_proj's in dim only without GQA); elsewhere its linears are quantized, unscaled.
    #: Any other group whose widths disagree is a wrong description (an error when resolved)
    requires_matching_shapes: bool = False


@dataclass(frozen=True)
class KeptLinear:
    """A linear of the decoder block that stays in full precision on purpose, and why."""

    path: str  # relative to the block, e.g. "mlp.router"
    reason: str  # written into the calibration record next to the quantized modules


AutoClass = Literal["AutoModelForImageTextToText", "AutoModelForCausalLM", "AutoModel"]


@dataclass(frozen=True)
class ModelFamily:
    """A decoder-based (V)LM architecture described as data. Paths are relative to the loaded model."""

    name: str  # e.g. "qwen2vl"
    model_types: tuple[str, ...]  # config.model_type values this description covers
    blocks: str  # ModuleList of language decoder blocks, e.g. "model.language_model.layers"
    embed_tokens: str  # e.g. "model.language_model.embed_tokens"
    #: scaling groups in block order. Every nn.Linear of a block is quantized: a linear no group
    #: covers is quantized on its own (RTN / GPTQ, never scaled) unless listed in ``keep_fp``
    groups: tuple[ScalingGroup, ...]
    keep_fp: tuple[KeptLinear, ...] = ()
    vision: tuple[str, ...] = ()  # vision tower(s) and projector: never quantized
    #: config attributes (on the top-level config) holding image/video placeholder token ids
    vision_token_config_keys: tuple[str, ...] = ()
    #: tokenizer strings of placeholder tokens a config does not name (InternVL2's ``<IMG_CONTEXT>``)
    vision_token_strings: tuple[str, ...] = ()
    auto_class: AutoClass = "AutoModelForImageTextToText"  # transformers Auto class used to load it
    multimodal: bool = True
    #: the modelling code is remote: loading without ``trust_remote_code=True`` is refused up front
    requires_trust_remote_code: bool = False
    #: for wrappers whose one model_type hides several language models (``internvl_chat``): the only
    #: ``llm_config.model_type`` this description covers
    llm_model_type: str | None = None

    def output_linear(self, kind: GroupKind) -> str:
        """The block path of the last linear of the last group of ``kind`` (the attention output
        projection, the MLP down projection): where MBQ reads its modality gradients."""
        for group in reversed(self.groups):
            if group.kind is kind:
                return group.linears[-1]
        raise ValueError(f"family {self.name!r} has no {kind.value} scaling group")
