"""The sensitivity layer's user-facing error (kept apart so every module can import it)."""

from __future__ import annotations

from qigbench.errors import QigbenchError


class SensitivityError(QigbenchError, ValueError):
    """A provider was configured or called with inputs it cannot attribute; the message names the fix."""
