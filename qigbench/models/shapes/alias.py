"""The ``shape:NAME@LAYERS[+vision=N][+width=D]`` model spelling.

One string names a real-shape model everywhere a model alias goes (``--model`` of every command,
``pytest suites/ --model ...``): ``shape:qwen2vl-7b@2`` is Qwen2-VL-7B's shape with 2 decoder
blocks and a 2-layer vision tower; ``shape:internvl2-26b@4+vision=1+width=8`` narrows the language
model eight-fold (``+``, not ``,``: the suites split ``--model`` lists on commas). Without ``@``:
2 blocks, vision depth 2 (or the real one if smaller), full width.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from qigbench.models.errors import ShapeError
from qigbench.models.shapes.build import BuildPlan, plan_build, shape_model_dir, shape_model_path
from qigbench.models.shapes.data import PREFIX, SHAPES

DEFAULT_LAYERS = 2
DEFAULT_VISION_LAYERS = 2


@dataclass(frozen=True)
class ShapeRequest:
    name: str
    layers: int = DEFAULT_LAYERS
    vision_layers: int | None = None  # None: the default (2, or the real depth if smaller)
    width_divisor: int = 1
    dtype: str = "float32"

    def resolved_vision_layers(self) -> int | None:
        spec = SHAPES[self.name]
        if not spec.multimodal:
            return None
        return self.vision_layers if self.vision_layers is not None else min(DEFAULT_VISION_LAYERS, spec.vision_layers)

    def _plan(self) -> BuildPlan:
        return plan_build(
            self.name, self.layers, vision_layers=self.resolved_vision_layers(), width_divisor=self.width_divisor,
            dtype=self.dtype,
        )

    def build(self, cache_dir: str | Path | None = None) -> Path:
        return shape_model_dir(
            self.name, self.layers, vision_layers=self.resolved_vision_layers(), width_divisor=self.width_divisor,
            cache_dir=cache_dir, dtype=self.dtype,
        )

    def folder(self, cache_dir: str | Path | None = None) -> Path:
        """Where :meth:`build` writes (without building)."""
        return shape_model_path(self._plan(), self.width_divisor, cache_dir)

    @property
    def spelling(self) -> str:
        parts = [f"{PREFIX}{self.name}@{self.layers}"]
        if self.vision_layers is not None:
            parts.append(f"vision={self.vision_layers}")
        if self.width_divisor != 1:
            parts.append(f"width={self.width_divisor}")
        return "+".join(parts)


GRAMMAR = f"{PREFIX}NAME[@LAYERS[+vision=N][+width=D]]"
_NUMBER = re.compile(r"[1-9][0-9]*")  # ASCII digits only: int() also takes "2_0", " 2", "+2", "２"
_KEYS = ("vision", "width")


def _grammar(spelling: str, name: str, what: str) -> ShapeError:
    example = name if name in SHAPES else next(iter(SHAPES))
    return ShapeError(
        f"cannot read {spelling!r}: {what}. Spell it {GRAMMAR}: LAYERS decoder blocks, vision=N vision layers, "
        f"width=D narrows the language model D-fold (all whole numbers >= 1), e.g. "
        f"{PREFIX}{example}@2+vision=1+width=4, or {PREFIX}{example} for 2 blocks at full width; "
        f"real shapes: {', '.join(SHAPES)}"
    )


def _number(spelling: str, name: str, what: str, text: str) -> int:
    if not _NUMBER.fullmatch(text):
        raise _grammar(spelling, name, f"{what} must be a whole number >= 1, got {text!r}")
    return int(text)


def parse_shape_alias(spelling: str) -> ShapeRequest:
    """``shape:qwen2vl-7b@2+vision=1+width=4`` -> ShapeRequest; errors show the grammar.

    Strict: an empty part (a trailing ``@`` or ``+``), an unknown or repeated key and a number
    that is not a plain positive integer are errors, never a silent default.
    """
    if not spelling.startswith(PREFIX):
        raise ShapeError(f"{spelling!r} is not a real-shape model; spell it {GRAMMAR}")
    body = spelling[len(PREFIX):]
    name, at, options = body.partition("@")
    if name not in SHAPES:
        raise ShapeError(
            f"no real shape named {name!r} in {spelling!r}; known: {', '.join(SHAPES)} (spell it {GRAMMAR})"
        )
    if not at:
        return ShapeRequest(name)
    if not options:
        raise _grammar(spelling, name, "nothing after '@' (drop the '@' for the default 2 blocks)")
    head, *rest = options.split("+")
    layers = _number(spelling, name, "LAYERS (after '@')", head)
    values: dict[str, int] = {}
    for item in rest:
        key, sep, value = item.partition("=")
        if not item:
            raise _grammar(spelling, name, "an empty part between '+' signs")
        if not sep or key not in _KEYS:
            raise _grammar(spelling, name, f"unknown part {item!r} (the keys are {' and '.join(_KEYS)})")
        if key in values:
            raise _grammar(spelling, name, f"{key}= is given twice")
        values[key] = _number(spelling, name, f"{key}=", value)
    if "vision" in values and not SHAPES[name].multimodal:
        raise _grammar(spelling, name, f"{name} is a language model without a vision tower; drop +vision=")
    request = ShapeRequest(name, layers, values.get("vision"), values.get("width", 1))
    try:
        request._plan()  # fail now on a depth or width the checkpoint cannot have
    except ShapeError as err:
        raise ShapeError(f"cannot build {spelling!r}: {err}") from None
    return request
