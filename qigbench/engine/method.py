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

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar, cast, get_args

import torch

from qigbench.config import build, check_choices, check_only_with, config_to_dict
from qigbench.engine.contracts import RunContext, WorkUnit, one_block_units
from qigbench.errors import QigbenchError
from qigbench.results.identity import variant_label

if TYPE_CHECKING:
    from qigbench.engine.context import BlockContext
    from qigbench.engine.unit import UnitContext
    from qigbench.quant import QuantFormat

ENTRY_POINT_GROUP = "qigbench.methods"


@dataclass(frozen=True)
class MethodConfig:
    """Base of every method config (a frozen dataclass: hashable, stored with results).

    Construction checks ``Literal`` fields against their choices and ``only_with`` (field ->
    (selector, value)), which names the fields that apply only with one value of
    another field; setting one without it is an error (:func:`qigbench.config.check_only_with`).
    A subclass with its own ``__post_init__`` calls ``super().__post_init__()`` first."""

    only_with: ClassVar[Mapping[str, tuple[str, Any]]] = {}

    def __post_init__(self) -> None:
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:  # a solver config this one embeds (e.g. ScaleSearchConfig's checks)
            parent()
        check_choices(self)
        check_only_with(self)


ConfigT = TypeVar("ConfigT", bound=MethodConfig)


class Method(ABC, Generic[ConfigT]):
    """A PTQ method with its typed config: ``class QIG(EqualizationMethod[QIGMethodConfig])``.

    ``config_class`` (the runtime handle the option parser builds) is taken from the type
    argument, or from the type variable's bound for a generic base such as ``EqualizationMethod``."""

    name: ClassVar[str]
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    #: RTN needs no data; everything else calibrates
    needs_calibration: ClassVar[bool] = True
    #: keep the quantized propagation stream even in fp mode (see :meth:`keeps_quantized_stream`)
    needs_quantized_stream: ClassVar[bool] = False
    #: the stream the method's paper propagates between blocks in every format (``--propagation
    #: auto``); None: the format's rule (fp for weight-only, quantized for weight-activation formats)
    propagation: ClassVar[Literal["fp", "quantized"] | None] = None

    config: ConfigT

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "config_class" in vars(cls):
            return
        for base in vars(cls).get("__orig_bases__", ()):  # this class's own bases, not inherited ones
            for arg in get_args(base):
                arg = getattr(arg, "__bound__", None) or arg  # a TypeVar: its bound
                if isinstance(arg, type) and issubclass(arg, MethodConfig):
                    cls.config_class = arg
                    return

    def __init__(self, config: ConfigT | None = None) -> None:
        self.config = config if config is not None else cast(ConfigT, self.config_class())
        if not isinstance(self.config, self.config_class):
            raise TypeError(f"{self.name} expects a {self.config_class.__name__}, got {type(self.config).__name__}")

    def keeps_quantized_stream(self) -> bool:
        """Whether the engine keeps the quantized stream in fp propagation too (a configured
        method may need it, e.g. QIG's quantized-path baseline in a weight-only format)."""
        return self.needs_quantized_stream

    def prepare(self, run: RunContext) -> None:
        """Model-level work before the block loop (default: nothing)."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """What ``prepare`` computed, saved so an interrupted run resumes identically."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
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

    def label(self) -> str:
        """The name this configured method is stored, tabled and plotted under: ``qig`` at the
        method's defaults, ``qig[steps=4]`` with a result-changing option away from them
        (:func:`qigbench.results.identity.variant_label`)."""
        return variant_label(self.name, self.config)


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _load(ep: Any) -> type[Method[Any]]:
    cls = ep.load()
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise QigbenchError(f"entry point {ep.name} = {ep.value} is not a qigbench Method subclass")
    return cls  # type: ignore[no-any-return]


def available_methods() -> dict[str, type[Method[Any]]]:
    """Every installed method plugin, by name (imports them all)."""
    return {name: _load(ep) for name, ep in sorted(_entry_points().items())}


def build_config(cls: type[Method[Any]], options: Mapping[str, Any]) -> MethodConfig:
    """Build a method's config from ``key=value`` options (see :func:`qigbench.config.build`);
    ``sub.field=value`` sets a field of a nested config (e.g. ``qig.steps=16``)."""
    return build(cls.config_class, options, cls.name)


def get_method(name: str, options: Mapping[str, Any] | None = None) -> Method[Any]:
    eps = _entry_points()
    if name not in eps:
        raise QigbenchError(
            f"unknown method {name!r}; installed methods: {', '.join(sorted(eps)) or '(none)'} "
            "(a new method is a module in methods/ plus an entry point in pyproject.toml)"
        )
    cls = _load(eps[name])
    return cls(build_config(cls, options or {}))
