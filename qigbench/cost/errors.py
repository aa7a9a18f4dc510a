"""Errors of the cost measurements and predictions."""

from __future__ import annotations

from qigbench.errors import QigbenchError


class CostModelError(QigbenchError, ValueError):
    """A measurement cannot support a prediction (no blocks measured, a depth below the measured one,
    a per-block part fitted with a negative slope)."""
