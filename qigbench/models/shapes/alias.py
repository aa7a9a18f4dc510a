"""The ``shape:NAME@LAYERS[+vision=N][+width=D]`` model spelling.

One string names a real-shape model everywhere a model alias goes (``--model`` of every command,
``pytest suites/ --model ...``): ``shape:qwen2vl-7b@2`` is Qwen2-VL-7B's shape with 2 decoder
blocks and a 2-layer vision tower; ``shape:internvl2-26b@4+vision=1+width=8`` narrows the language
model eight-fold (``+``, not ``,``: the suites split ``--model`` lists on commas). Without ``@``:
2 blocks, vision depth 2 (or the real one if smaller), full width.
"""

from __future__ import annotations

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


def parse_shape_alias(spelling: str) -> ShapeRequest:
    """``shape:qwen2vl-7b@2+vision=1+width=4`` -> ShapeRequest; errors name the valid spelling."""
    if not spelling.startswith(PREFIX):
        raise ShapeError(f"{spelling!r} is not a real-shape model; spell it {PREFIX}NAME@LAYERS")
    body = spelling[len(PREFIX):]
    name, _, options = body.partition("@")
    if name not in SHAPES:
        raise ShapeError(f"no real shape named {name!r}; known: {', '.join(SHAPES)}")
    if not options:
        return ShapeRequest(name)
    head, *rest = options.split("+")
    values: dict[str, int] = {}
    try:
        layers = int(head)
        for item in rest:
            key, sep, value = item.partition("=")
            if not sep or key not in ("vision", "width"):
                raise ValueError(item)
            values[key] = int(value)
    except ValueError:
        raise ShapeError(
            f"cannot read {spelling!r}; spell it {PREFIX}{name}@LAYERS[+vision=N][+width=D], e.g. "
            f"{PREFIX}{name}@2+vision=1+width=4"
        ) from None
    request = ShapeRequest(name, layers, values.get("vision"), values.get("width", 1))
    request._plan()  # fail now on a depth or width the checkpoint cannot have
    return request
