"""Before the first calibration: is every model and every task's data of a matrix on this machine?

A suite or ``qigbench run`` that finds out only when it gets there spends minutes calibrating
(and, for a hub model that is not cached, retries the hub once per configuration) before failing.
:func:`preflight` asks once per model (:mod:`qigbench.models.availability`, disk only) and once per
dataset (:func:`qigbench.eval.aliases.missing_data`) and says which (case, task) pairs cannot run
and why; the pytest plugin skips exactly those with one message each, ``qigbench run`` stops.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from qigbench.matrix.cases import Case
from qigbench.matrix.options import FIDELITY_TASK, SuiteOptions


@dataclass(frozen=True)
class Preflight:
    models: dict[str, str] = field(default_factory=dict)  # unavailable model -> why, with the fixes
    data: dict[str, str] = field(default_factory=dict)  # task without data -> why, with the fixes

    @property
    def ok(self) -> bool:
        return not self.models and not self.data

    def blocked(self, case: Case, task: str) -> str | None:
        """Why ``(case, task)`` cannot run here, in one sentence (the fixes are in :meth:`lines`), or ``None``."""
        why = self.models.get(case.model) or self.data.get(task)
        return None if why is None else short(why)

    def lines(self) -> list[str]:
        """One line per unavailable model and per missing dataset."""
        return [*self.models.values(), *self.data.values()]


def short(message: str) -> str:
    """The diagnosis of a preflight message without its fixes (skip reasons repeat it per file)."""
    for cut in (" Fix it ", " Provide it "):
        if cut in message:
            return message.split(cut)[0] + " (how to fix it: the qigbench lines of this run's summary)"
    return message


def preflight(pairs: Iterable[tuple[Case, str]], options: SuiteOptions) -> Preflight:
    from qigbench.eval.aliases import missing_data
    from qigbench.models.availability import availability

    pairs = list(pairs)
    models: dict[str, str] = {}
    for model in dict.fromkeys(case.model for case, _ in pairs):
        found = availability(model, cache_dir=options.cache_dir)
        if not found.available:
            models[model] = found.reason
    # data of tasks whose model cannot load does not matter for this run
    tasks = [task for case, task in pairs if task != FIDELITY_TASK and case.model not in models]
    return Preflight(models, missing_data(tasks))
