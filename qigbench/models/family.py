"""How an architecture family is described: as data, never as if/elif on class names.

A :class:`ModelFamily` says where the language decoder blocks live, which modules are the
vision tower and projector, and how each block splits into *scaling groups* (AWQ-style
channel-wise equalisation): the previous op that absorbs ``1/s``, the linears that are scaled
by ``s``, and the module whose output is compared during the search.

Fused projections (Phi-3's ``qkv_proj`` and ``gate_up_proj``, InternLM2's ``wqkv``) are described
by the layout of their output rows (:class:`FusedLinear`): named parts whose sizes come from the
model config. A group's previous op may then be one part of a fused linear (``prev_part``: the v
rows of ``qkv_proj`` absorb o's ``1/s``, the up half of ``gate_up_proj`` absorbs down's), and the
clip search's "never clip" rule (:class:`Unclipped`) may name parts too. The sizes are read from
the config once, when the registry binds the family to a model (:meth:`ModelFamily.bind`).

The groups are listed in **data-flow order** (the order the block computes them: qkv before o,
whatever order the modelling code defines its modules in); the engine and every method run them
in that order, and ``tests/models/test_every_family.py`` checks it against each specimen's
recorded forward pass.

The same object also carries what makes a family file complete (aliases, the offline tiny
specimen, the real checkpoints' shapes): see :mod:`qigbench.models.specimen`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Literal

from qigbench.models.errors import ScalingGroupError
from qigbench.models.specimen import ModelAlias, ShapeSpec, TinySpecimen


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
    #: when prev_op is a fused linear (:attr:`ModelFamily.fused`): the part of its output rows that
    #: feeds this group ("v" of qkv_proj for o, "up" of gate_up_proj for down); "" = all its rows
    prev_part: str = ""
    #: the inspected module computes each token's output from that token's input alone (an MLP, a
    #: linear): replacing token t changes only output t. Leave-one-out then needs two forwards per
    #: sample, not one per token (``LeaveOneOutConfig.token_wise``); checked for every family
    token_wise: bool = False


@dataclass(frozen=True)
class KeptLinear:
    """A linear of the decoder block that stays in full precision on purpose, and why."""

    path: str  # relative to the block, e.g. "mlp.router"
    reason: str  # written into the calibration record next to the quantized modules


#: a part's size: a constant, or the name of a language-model config attribute ("num_key_value_heads")
Size = int | str


@dataclass(frozen=True)
class FusedPart:
    """One named part of a fused linear's output rows, with its size relative to the others."""

    name: str  # "q", "k", "v", "gate", "up"
    size: Size


@dataclass(frozen=True)
class FusedLinear:
    """The layout of a fused linear's output rows, so a slice of them can be named.

    The rows are ``interleave`` repeats of the parts in order, each repeat holding ``size /
    interleave`` units of every part; a unit is ``out_features / sum(sizes)`` rows. Phi-3's
    ``qkv_proj`` is ``[q | k | v]`` with sizes (heads, kv_heads, kv_heads) (a unit is one head);
    its ``gate_up_proj`` is ``[gate | up]`` with sizes (1, 1); InternLM2's ``wqkv`` repeats
    ``[q | k | v]`` once per key-value group (``interleave="num_key_value_heads"``).
    """

    path: str  # relative to the block, e.g. "self_attn.qkv_proj"
    parts: tuple[FusedPart, ...]
    interleave: Size = 1

    def sizes(self, dims: Mapping[str, int]) -> tuple[int, list[int]]:
        """``(interleave, [size of each part])`` as integers, read from the bound config ``dims``."""
        return _size(self.interleave, dims, self.path), [_size(p.size, dims, self.path) for p in self.parts]

    def rows(self, part: str, out_features: int, dims: Mapping[str, int]) -> tuple[tuple[int, int], ...]:
        """The ``[start, stop)`` runs of output rows that make up ``part``, in channel order."""
        names = [p.name for p in self.parts]
        if part not in names:
            raise ScalingGroupError(f"fused linear {self.path!r} has parts {names}, not {part!r}")
        repeats, sizes = self.sizes(dims)
        total = sum(sizes)
        if total <= 0 or repeats <= 0 or out_features % total or any(s % repeats for s in sizes):
            raise ScalingGroupError(
                f"fused linear {self.path!r}: its {out_features} output rows do not split into parts "
                f"{dict(zip(names, sizes, strict=True))} repeated {repeats} times; the family's layout does not match "
                "this block (or the config it was bound to)"
            )
        unit = out_features // total
        per_repeat = [s // repeats * unit for s in sizes]
        index = names.index(part)
        offset, stride = sum(per_repeat[:index]), sum(per_repeat)
        return tuple((r * stride + offset, r * stride + offset + per_repeat[index]) for r in range(repeats))


@dataclass(frozen=True)
class Unclipped:
    """Output rows of a linear that AWQ's clip search must leave alone, and why.

    ``parts=()`` is the whole linear; otherwise the named parts of a fused linear. The clip search
    chooses a ratio per output row independently of the other rows, so leaving the q and k rows of
    a fused ``qkv_proj`` unclipped and clipping its v rows is exactly what the search does on
    separate ``q_proj`` / ``k_proj`` / ``v_proj``.
    """

    path: str  # relative to the block
    reason: str
    parts: tuple[str, ...] = ()


#: AutoAWQ's reason for never clipping q and k (``_search_best_clip``'s ``avoid_clipping``)
QK_CLIP_REASON = (
    "q and k are only consumed through the rotary embedding and the attention softmax: the clip "
    "search's error (the linear's own output) does not measure what clipping them costs, and "
    "clipping them hurts (AutoAWQ leaves them unclipped)"
)

AutoClass = Literal["AutoModelForImageTextToText", "AutoModelForCausalLM", "AutoModel"]


@dataclass(frozen=True)
class ModelFamily:
    """A decoder-based (V)LM architecture described as data. Paths are relative to the loaded model."""

    name: str  # e.g. "qwen2vl"
    model_types: tuple[str, ...]  # config.model_type values this description covers
    blocks: str  # ModuleList of language decoder blocks, e.g. "model.language_model.layers"
    embed_tokens: str  # e.g. "model.language_model.embed_tokens"
    #: scaling groups in data-flow order. Every nn.Linear of a block is quantized: a linear no group
    #: covers is quantized on its own (RTN / GPTQ, never scaled) unless listed in ``keep_fp``
    groups: tuple[ScalingGroup, ...]
    keep_fp: tuple[KeptLinear, ...] = ()
    #: layouts of the block's fused linears, so groups and clip rules can name a part of their rows
    fused: tuple[FusedLinear, ...] = ()
    #: what AWQ's clip search never clips (q and k: :data:`QK_CLIP_REASON`)
    unclipped: tuple[Unclipped, ...] = ()
    vision: tuple[str, ...] = ()  # vision tower(s) and projector: never quantized
    #: config attributes (on the top-level config; dotted for a sub-config, "vision_config.image_token_id")
    #: holding image/video placeholder token ids
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
    #: attribute of the top-level config holding the language model's config ("llm_config"); "" =
    #: ``config.get_text_config()`` (the config itself for a flat one)
    text_config: str = ""
    #: the config values the fused layouts name, filled in by :meth:`bind`
    dims: tuple[tuple[str, int], ...] = ()
    bound: bool = False
    # -- what else the family file declares (see qigbench.models.specimen); not part of the architecture
    aliases: tuple[ModelAlias, ...] = field(default=(), repr=False, compare=False)
    tiny: tuple[TinySpecimen, ...] = field(default=(), repr=False, compare=False)
    shapes: tuple[ShapeSpec, ...] = field(default=(), repr=False, compare=False)

    def output_linear(self, kind: GroupKind) -> str:
        """The block path of the last linear of the last group of ``kind`` (the attention output
        projection, the MLP down projection): where MBQ reads its modality gradients."""
        for group in reversed(self.groups):
            if group.kind is kind:
                return group.linears[-1]
        raise ValueError(f"family {self.name!r} has no {kind.value} scaling group")

    # ------------------------------------------------------------------ fused layouts
    def needed_dims(self) -> tuple[str, ...]:
        """The config attributes the fused layouts name (what :meth:`bind` reads)."""
        names = [s for f in self.fused for s in (f.interleave, *(p.size for p in f.parts)) if isinstance(s, str)]
        return tuple(dict.fromkeys(names))

    def bind(self, config: Any) -> ModelFamily:
        """This family with the fused layouts' sizes read from ``config`` (the loaded model's); the
        family itself when it has no fused linear. A size the config lacks is left out: resolving a
        group that needs it then fails, naming the attribute."""
        needed = self.needed_dims()
        if not needed:
            return self
        text = self.language_config(config)
        dims = tuple((n, int(v)) for n in needed if isinstance(v := _get(text, n), int) and not isinstance(v, bool))
        return replace(self, dims=dims, bound=True)

    def language_config(self, config: Any) -> Any:
        """The language model's part of a (top-level) config."""
        if self.text_config:
            return _get(config, self.text_config)
        get_text = getattr(config, "get_text_config", None)
        return get_text() if callable(get_text) else config

    def fused_layout(self, path: str) -> FusedLinear | None:
        return next((f for f in self.fused if f.path == path), None)

    def part_rows(self, path: str, part: str, out_features: int) -> tuple[tuple[int, int], ...]:
        """The output-row runs of ``part`` of the fused linear at ``path`` (an error naming the fix
        when the family describes no such layout or has not been bound to a config)."""
        layout = self.fused_layout(path)
        if layout is None:
            raise ScalingGroupError(
                f"family {self.name!r} names part {part!r} of {path!r}, but describes no fused layout for it; "
                "add a FusedLinear for it to the family's fused layouts"
            )
        if self.needed_dims() and not self.bound:
            raise ScalingGroupError(
                f"family {self.name!r} is not bound to a model config, so the parts of {path!r} have no size; "
                "get the family from family_for(model or config)"
            )
        return layout.rows(part, out_features, dict(self.dims))


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _size(size: Size, dims: Mapping[str, int], path: str) -> int:
    if isinstance(size, int):
        return size
    if size not in dims:
        raise ScalingGroupError(
            f"fused linear {path!r}: its layout needs the language model config's {size!r}, which the model's config "
            "does not have (an integer); the family's fused layout does not fit this model"
        )
    return dims[size]
