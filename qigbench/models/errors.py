"""Errors of the model layer; each message names the fix."""

from __future__ import annotations

from qigbench.errors import QigbenchError


class UnknownModelError(QigbenchError, ValueError):
    """A model name is neither a known alias nor an existing local path."""


class UnknownFamilyError(QigbenchError, ValueError):
    """A loaded model's ``config.model_type`` has no family description."""


class TrustRemoteCodeError(QigbenchError, ValueError):
    """A checkpoint needs remote code but the user did not allow it."""


class ScalingGroupError(QigbenchError, ValueError):
    """A scaling group cannot be applied to a block (missing module, shape mismatch, bad scales)."""


class ShapeError(QigbenchError, ValueError):
    """A real-shape model was asked for with a depth or width divisor its checkpoint cannot have."""
