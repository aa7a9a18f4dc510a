"""The one interface every PTQ method plugin implements, and the registry that finds them.

A method is a class with a typed dataclass config. The engine calls ``prepare`` once (model-level
pre-passes such as MBQ's gradient ratios), then ``quantize_unit`` for each unit of work the method
asks for (``units``: one decoder block each by default), which calls ``quantize_block`` for each
block of the unit; when ``quantize_block`` returns, every linear of the block must be a
``QuantLinear``. What the hooks are given lives in :mod:`qigbench.engine.contracts` (and
``context`` / ``unit``), so this module and the loop in :mod:`qigbench.engine.run` do not import
each other. Plugins register
under the entry-point group ``qigbench.methods`` (see pyproject.toml), so a new method is one
module plus one line there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from qigbench.engine.contracts import RunContext, WorkUnit, one_block_units
from qigbench.errors import QigbenchError

if TYPE_CHECKING:
    from qigbench.engine.context import BlockContext
    from qigbench.engine.unit import UnitContext
    from qigbench.quant import QuantFormat

ENTRY_POINT_GROUP = "qigbench.methods"


@dataclass(frozen=True)
class MethodConfig:
    """Base of every method config (a frozen dataclass: hashable, stored with results)."""


class Method(ABC):
    name: ClassVar[str]
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    #: RTN needs no data; everything else calibrates
    needs_calibration: ClassVar[bool] = True
    #: keep the quantized propagation stream even in fp mode (see :meth:`keeps_quantized_stream`)
    needs_quantized_stream: ClassVar[bool] = False

    def __init__(self, config: MethodConfig | None = None) -> None:
        self.config = config if config is not None else self.config_class()
        if not isinstance(self.config, self.config_class):
            raise TypeError(f"{self.name} expects a {self.config_class.__name__}, got {type(self.config).__name__}")

    def keeps_quantized_stream(self) -> bool:
        """Whether the engine keeps the quantized stream in fp propagation too (a configured
        method may need it, e.g. QIG's quantized-path baseline in a weight-only format)."""
        return self.needs_quantized_stream

    def prepare(self, run: RunContext) -> None:  # noqa: B027 - optional hook
        """Model-level work before the block loop (default: nothing)."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """What ``prepare`` computed, saved so an interrupted run resumes identically."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:  # noqa: B027 - optional hook
        pass

    def weights_on_format_grid(self, fmt: QuantFormat) -> bool:
        """Whether the quantized weights lie on ``fmt``'s integer grid (so they can be packed);
        False for a method with its own weight format (Q-VLM's NF4)."""
        return True

    @abstractmethod
    def quantize_block(self, ctx: BlockContext) -> None:
        """Quantize every linear of ``ctx.block`` (and change its norms/scales as the method needs)."""

    def units(self, n_blocks: int) -> Sequence[WorkUnit]:
        """The loop's units of work over ``n_blocks`` decoder blocks (default: one block each; a
        method that searches across blocks asks for spans, e.g. :func:`~qigbench.engine.contracts.spans_of`)."""
        return one_block_units(n_blocks)

    def quantize_unit(self, unit: UnitContext) -> None:
        """Quantize the blocks of one unit: by default ``quantize_block`` on each, in order (the
        engine measures each block and propagates the streams between them). An override may look
        at the whole span first (``unit.run("fp")``) but must step through every block."""
        for ctx in unit:
            self.quantize_block(ctx)

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "config": config_to_dict(self.config)}


def config_to_dict(config: MethodConfig) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if hasattr(value, "value") and not isinstance(value, (int, float, str, bool)):
            return value.value
        return value

    return plain(config)  # type: ignore[no-any-return]


def config_hash(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _load(ep: Any) -> type[Method]:
    cls = ep.load()
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise QigbenchError(f"entry point {ep.name} = {ep.value} is not a qigbench Method subclass")
    return cls  # type: ignore[no-any-return]


def available_methods() -> dict[str, type[Method]]:
    """Every installed method plugin, by name (imports them all)."""
    return {name: _load(ep) for name, ep in sorted(_entry_points().items())}


def build_config(cls: type[Method], options: dict[str, Any]) -> MethodConfig:
    """Build a method's config from ``key=value`` options; strings are converted by field type and
    ``sub.field=value`` sets a field of a nested config (e.g. ``qig.steps=16``)."""
    return _build(cls.config_class, options, cls.name)


def _build(config_class: type[Any], options: dict[str, Any], owner: str) -> Any:
    types = {f.name: str(f.type) for f in dataclasses.fields(config_class)}
    fields = set(types)
    defaults = config_class()
    values: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, raw in options.items():
        key = key.replace("-", "_")
        head, _, rest = key.partition(".")
        if head not in fields:
            known = ", ".join(sorted(fields)) or "(none)"
            raise QigbenchError(f"{owner} has no option {head!r}; its options are: {known}")
        default = getattr(defaults, head)
        if rest:
            if not dataclasses.is_dataclass(default):
                raise QigbenchError(f"option {head} of {owner} has no sub-options (got {key!r})")
            nested.setdefault(head, {})[rest] = raw
        else:
            optional = "None" in types[head]
            if isinstance(raw, str) and raw.lower() == "none" and optional:
                values[head] = None  # "none" means unset only where the field is optional
                continue
            if default is None and isinstance(raw, str):
                default = _example_of(types[head])
            values[head] = _convert(raw, default, key)
    for head, sub in nested.items():
        values[head] = dataclasses.replace(
            getattr(defaults, head), **_fields_of(_build(type(getattr(defaults, head)), sub, f"{owner}.{head}"), sub)
        )
    try:
        return config_class(**values)
    except (TypeError, ValueError) as err:
        raise QigbenchError(f"invalid options for {owner}: {err}") from err


def _example_of(type_text: str) -> Any:
    """A default of the right type for an optional field (``bool | None`` -> False)."""
    for name, example in (("bool", False), ("int", 0), ("float", 0.0)):
        if name in type_text.replace("None", ""):
            return example
    return ""


def _fields_of(config: Any, options: dict[str, Any]) -> dict[str, Any]:
    names = {k.replace("-", "_").partition(".")[0] for k in options}
    return {name: getattr(config, name) for name in names}


def _convert(raw: Any, default: Any, key: str) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        if isinstance(default, bool):
            if raw.lower() not in {"true", "false", "1", "0", "yes", "no"}:
                raise ValueError(raw)
            return raw.lower() in {"true", "1", "yes"}
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, tuple):
            return tuple(p for p in raw.split(",") if p)
    except ValueError as err:
        raise QigbenchError(f"option {key}={raw!r} should be a {type(default).__name__}") from err
    if dataclasses.is_dataclass(default):
        raise QigbenchError(f"option {key} is structured; set its fields as {key}.FIELD=VALUE")
    return raw


def get_method(name: str, options: dict[str, Any] | None = None) -> Method:
    eps = _entry_points()
    if name not in eps:
        raise QigbenchError(
            f"unknown method {name!r}; installed methods: {', '.join(sorted(eps)) or '(none)'} "
            "(a new method is a module in methods/ plus an entry point in pyproject.toml)"
        )
    cls = _load(eps[name])
    return cls(build_config(cls, options or {}))
