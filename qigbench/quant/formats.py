"""Quantization formats: the strings researchers write (``W3A16``, ``W4A8``, ``W4A16g64``) and the
typed specs the quantizer consumes.

Defaults follow the QIG paper, Appendix B:

* weight-only ``W{b}A16``: asymmetric, group-wise along the input dimension, group 128;
* weight-activation ``W{b}A{a}``: weights symmetric per output channel, activations symmetric,
  dynamic, per token.

A suffix ``g{N}`` sets the weight group size (``g0`` or ``gc`` means per-channel), and
``-sym`` / ``-asym`` overrides the weight grid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import Enum

from qigbench.errors import FormatError

#: Bit widths the integer quantizer supports; 16 means "leave in floating point".
MIN_BITS = 2
MAX_BITS = 8
FLOAT_BITS = 16
DEFAULT_GROUP_SIZE = 128


class Granularity(str, Enum):
    """Which elements share one scale (and zero point)."""

    PER_TENSOR = "per-tensor"
    PER_CHANNEL = "per-channel"  # one scale per weight row (output channel)
    PER_GROUP = "per-group"  # one scale per ``group_size`` consecutive input elements of a row
    PER_TOKEN = "per-token"  # one scale per activation vector (last dim), computed at run time


@dataclass(frozen=True)
class QuantSpec:
    """How one tensor is quantized."""

    bits: int
    symmetric: bool
    granularity: Granularity
    group_size: int | None = None

    def __post_init__(self) -> None:
        _check_bits(self.bits, what="quantizer")
        if self.granularity is Granularity.PER_GROUP:
            if self.group_size is None or self.group_size <= 0:
                raise FormatError(
                    f"group size must be a positive integer for per-group quantization, got "
                    f"{self.group_size!r}; use e.g. group_size=128, or per-channel granularity"
                )
        elif self.group_size is not None:
            raise FormatError(
                f"group_size={self.group_size} only applies to per-group quantization, "
                f"not {self.granularity.value}; drop it or use Granularity.PER_GROUP"
            )

    @property
    def qmin(self) -> int:
        return -(2 ** (self.bits - 1)) if self.symmetric else 0

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.symmetric else 2**self.bits - 1


@dataclass(frozen=True)
class QuantFormat:
    """A weight spec plus an optional activation spec (``None`` = activations stay 16-bit)."""

    weight: QuantSpec
    activation: QuantSpec | None = None

    @property
    def w_bits(self) -> int:
        return self.weight.bits

    @property
    def a_bits(self) -> int:
        return self.activation.bits if self.activation is not None else FLOAT_BITS

    @property
    def weight_only(self) -> bool:
        return self.activation is None

    @property
    def name(self) -> str:
        """Canonical string; ``parse_format(fmt.name) == fmt`` for every format."""
        w = self.weight
        base = f"W{w.bits}A{self.a_bits}"
        default = _default_weight_spec(w.bits, weight_only=self.weight_only)
        if w.granularity != default.granularity or w.group_size != default.group_size:
            base += f"g{w.group_size}" if w.granularity is Granularity.PER_GROUP else "gc"
        if w.symmetric != default.symmetric:
            base += "-sym" if w.symmetric else "-asym"
        return base

    def __str__(self) -> str:
        return self.name


_FORMAT_RE = re.compile(
    r"^w(?P<w>\d+)a(?P<a>\d+)(?:g(?P<g>\d+|c))?(?:[-_](?P<grid>sym|asym))?$", re.IGNORECASE
)


def _check_bits(bits: int, *, what: str, allow_float: bool = False) -> None:
    if allow_float and bits == FLOAT_BITS:
        return
    if not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        allowed = f"{MIN_BITS}..{MAX_BITS}" + (f" or {FLOAT_BITS} (no quantization)" if allow_float else "")
        raise FormatError(f"{what} bits must be in {allowed}, got {bits!r}")


def _default_weight_spec(bits: int, *, weight_only: bool) -> QuantSpec:
    if weight_only:
        return QuantSpec(bits, symmetric=False, granularity=Granularity.PER_GROUP, group_size=DEFAULT_GROUP_SIZE)
    return QuantSpec(bits, symmetric=True, granularity=Granularity.PER_CHANNEL)


def parse_format(text: str | QuantFormat) -> QuantFormat:
    """Parse ``W3A16``, ``W4A8``, ``w4a16g64``, ``W4A8g128``, ``W4A16gc``, ``W4A16-sym``.

    Raises :class:`FormatError` naming what is wrong and what a valid string looks like.
    """
    if isinstance(text, QuantFormat):
        return text
    if not isinstance(text, str):
        raise FormatError(f"a format must be a string like 'W4A16', got {type(text).__name__}")
    match = _FORMAT_RE.match(text.strip())
    if match is None:
        raise FormatError(
            f"cannot parse quantization format {text!r}: expected W<bits>A<bits>[g<group>|gc][-sym|-asym], "
            "e.g. W3A16, W4A8, W4A16g64"
        )
    w_bits, a_bits = int(match["w"]), int(match["a"])
    _check_bits(w_bits, what=f"weight ({text!r})")
    _check_bits(a_bits, what=f"activation ({text!r})", allow_float=True)
    weight_only = a_bits == FLOAT_BITS
    weight = _default_weight_spec(w_bits, weight_only=weight_only)
    group = match["g"]
    if group is not None:
        if group.lower() == "c":
            weight = replace(weight, granularity=Granularity.PER_CHANNEL, group_size=None)
        else:
            size = int(group)
            if size <= 0:
                raise FormatError(
                    f"group size in {text!r} must be positive; write 'gc' (or omit g) for per-channel"
                )
            weight = replace(weight, granularity=Granularity.PER_GROUP, group_size=size)
    if match["grid"] is not None:
        weight = replace(weight, symmetric=match["grid"].lower() == "sym")
    activation = None
    if not weight_only:
        activation = QuantSpec(a_bits, symmetric=True, granularity=Granularity.PER_TOKEN)
    return QuantFormat(weight=weight, activation=activation)
