"""Errors of the results store, reports and regression checks."""

from __future__ import annotations

from qigbench.errors import QigbenchError


class ResultsError(QigbenchError, ValueError):
    """A results database, row, filter or baseline file is invalid; the message names the fix."""
