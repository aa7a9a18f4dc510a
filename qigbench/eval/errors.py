"""Evaluation errors a user can act on (each message names the fix)."""

from __future__ import annotations

from qigbench.errors import QigbenchError


class EvalError(QigbenchError):
    """An evaluation could not run or produced no usable results."""


class MissingDatasetError(EvalError, FileNotFoundError):
    """A benchmark's data is not available offline (HF cache or local path)."""


class UnknownTaskError(EvalError, KeyError):
    """A task name is neither a paper alias, a pack task, nor a harness task."""

    def __str__(self) -> str:  # KeyError quotes its message; a user should read plain text
        return str(self.args[0]) if self.args else ""
