"""Errors a user can act on.

Every error raised for bad user input is a ``QigbenchError`` whose message says what is
wrong *and* how to fix it; the CLI prints the message without a traceback.
"""

from __future__ import annotations


class QigbenchError(Exception):
    """Base class for errors caused by user input or environment, not by a bug."""


class FormatError(QigbenchError, ValueError):
    """A quantization format string or spec is invalid."""


class QuantInputError(QigbenchError, ValueError):
    """A tensor handed to the quantizer cannot be quantized (NaN, empty, integer dtype...)."""


def check_positive(name: str, value: int | None) -> None:
    """``--batch-size 0`` and friends: a message instead of ``range() arg 3 must not be zero`` later."""
    if value is not None and value < 1:
        raise QigbenchError(f"{name} must be >= 1, got {value}")
