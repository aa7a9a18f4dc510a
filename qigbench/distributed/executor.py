"""What every executor gives the driver: a stream of :class:`JobEvent` for the jobs it was handed."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from qigbench.distributed.jobs import JobError, JobRecord, JobSpec

EventKind = Literal["started", "done", "retry", "failed"]
Target = Callable[[JobSpec], JobRecord]


@dataclass(frozen=True)
class JobEvent:
    kind: EventKind
    job: JobSpec
    record: JobRecord | None = None
    detail: str = ""  # started: where; retry / failed: why
    log: str = ""  # failed: the log to read (an engine's own when ours was never written)


class Executor(Protocol):
    name: str

    @property
    def slots(self) -> int:
        """How many jobs run at once (for the ETA)."""

    def describe(self, jobs: Sequence[JobSpec]) -> str:
        """What ``run`` would submit: the resources per job, as the engine will see them."""

    def run(self, jobs: Sequence[JobSpec]) -> Iterator[JobEvent]:
        """Run ``jobs``; yield one ``done`` or ``failed`` per job (``started`` / ``retry`` besides)."""


def require(module: str) -> Any:
    """Import an optional engine, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise JobError(
            f"this executor needs {module}, which is not installed: pip install 'qigbench[distributed]' "
            f"(or pip install -c constraints.txt {module})"
        ) from err
