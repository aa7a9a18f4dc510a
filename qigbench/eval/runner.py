"""Run tasks through the real harnesses, in process, and check that they really produced results.

* VLMs: lmms-eval's ``simple_evaluate(model=QigbenchVLM(...))``;
* LMs: lm-eval's ``simple_evaluate(model=HFLM(pretrained=<model instance>, tokenizer=...))``.

Both harnesses log a failed task and carry on (lmms-eval's CLI even exits 0), so
:func:`check_results` raises when a requested task has no numbers.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from qigbench.eval.aliases import Harness, ResolvedTask, check_offline_data, resolve_tasks
from qigbench.eval.errors import EvalError
from qigbench.stats.paired import ExampleScores


@dataclass
class EvalResults:
    """The harness's results dict plus the numeric metrics per task, flattened for tables."""

    harness: Harness
    raw: dict[str, Any]
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    #: task -> metric -> per-example scores (by ``doc_id``), where the metric is their mean
    examples: dict[str, dict[str, ExampleScores]] = field(default_factory=dict)

    def table(self) -> str:
        rows = [(task, metric, value) for task, m in self.metrics.items() for metric, value in m.items()]
        width = max([len("task"), *(len(r[0]) for r in rows)])
        mwidth = max([len("metric"), *(len(r[1]) for r in rows)])
        lines = [f"{'task':{width}s}  {'metric':{mwidth}s}  value", f"{'-' * width}  {'-' * mwidth}  ------"]
        lines += [f"{t:{width}s}  {m:{mwidth}s}  {v:.4f}" for t, m, v in rows]
        return "\n".join(lines)

    def write(self, directory: str | Path) -> Path:
        """Write the harness's results JSON (samples left out) to ``directory/results_<harness>.json``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"results_{self.harness}.json"
        slim = {k: v for k, v in self.raw.items() if k != "samples"}
        path.write_text(json.dumps(slim, indent=2, default=str))
        return path


def numeric_metrics(task_results: dict[str, Any]) -> dict[str, float]:
    """``{"acc": 0.5}`` from ``{"acc,none": 0.5, "acc_stderr,none": ..., "alias": ...}``."""
    out = {}
    for key, value in task_results.items():
        name, _, _filter = key.partition(",")
        if name in ("alias", "sample_len", "sample_count") or "_stderr" in name or isinstance(value, bool):
            continue
        if isinstance(value, int | float) and math.isfinite(float(value)):
            out[name] = float(value)
    return out


def sample_scores(samples: list[dict[str, Any]], metrics: dict[str, float]) -> dict[str, ExampleScores]:
    """Per-example scores from a harness's logged samples, for the metrics that are their mean.

    A metric whose aggregate is not the mean of its per-sample values (perplexity aggregates
    (loglik, words) pairs; a filter other than the first) is left out rather than mislabelled.
    """
    per: dict[str, dict[str, float]] = {}
    first_filter = samples[0].get("filter") if samples else None
    for sample in samples:
        if sample.get("filter") != first_filter or "doc_id" not in sample:
            continue
        for name in metrics:
            value = sample.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(float(value)):
                per.setdefault(name, {})[str(sample["doc_id"])] = float(value)
    out = {}
    for name, by_doc in per.items():
        ids = sorted(by_doc, key=lambda d: (len(d), d))
        scores = ExampleScores(tuple(ids), tuple(by_doc[i] for i in ids))
        if len(ids) >= 1 and math.isclose(scores.mean(), metrics[name], rel_tol=1e-6, abs_tol=1e-9):
            out[name] = scores
    return out


def check_results(raw: dict[str, Any] | None, tasks: list[str], harness: Harness) -> EvalResults:
    """Raise :class:`EvalError` unless every requested task (or each task of a group) has a number."""
    if not raw or "results" not in raw:
        raise EvalError(f"{harness} returned no results; its log above says which task failed")
    metrics = {task: numeric_metrics(r) for task, r in raw["results"].items()}
    metrics = {task: m for task, m in metrics.items() if m}
    groups = raw.get("group_subtasks", {})
    for task in tasks:
        members = groups.get(task) or [task]
        missing = [m for m in members if m not in metrics]
        if missing:
            raise EvalError(
                f"{harness} produced no metrics for {', '.join(missing)}; see the harness log for the cause"
            )
    samples = raw.get("samples") or {}
    examples = {task: sample_scores(samples.get(task) or [], m) for task, m in metrics.items()}
    return EvalResults(harness=harness, raw=raw, metrics=metrics, examples={t: e for t, e in examples.items() if e})


def _split(tasks: list[ResolvedTask], harness: Harness) -> list[ResolvedTask]:
    chosen = [t for t in tasks if t.harness == harness]
    for t in chosen:
        if t.alias is not None:
            check_offline_data(t.alias)
    return chosen


def _include(path: str | Path | list[str] | None) -> str | list[str] | None:
    if not path:
        return None
    return [str(p) for p in path] if isinstance(path, list) else str(path)


def _include_defaults(tasks: list[ResolvedTask]) -> bool:
    return not all(t.pack for t in tasks)  # indexing the built-in task folders takes seconds: skip when unused


def evaluate_vlm(
    model: nn.Module,
    processor: Any,
    tasks: list[str],
    *,
    include_path: str | Path | list[str] | None = None,
    limit: int | None = None,
    batch_size: int = 1,
    device: str | None = None,
    lmms_model: Any = None,
) -> EvalResults:
    """Evaluate an in-memory VLM on lmms-eval tasks (paper aliases, pack tasks, ``lmms:NAME``).

    ``lmms_model`` replaces the default ``QigbenchVLM(model, processor)`` wrapper (tests pass an
    oracle subclass); ``include_path`` is the pack's ``lmms`` folder or any folder of task YAMLs.
    """
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    from qigbench.eval.lmms_model import QigbenchVLM

    resolved = _split(resolve_tasks(tasks), "lmms")
    if not resolved:
        raise EvalError(f"none of {tasks} is an lmms-eval task; run language-model tasks with evaluate_lm")
    names = [t.task for t in resolved]
    manager = TaskManager(
        "WARNING",
        include_path=_include(include_path),
        include_defaults=_include_defaults(resolved),
    )
    unknown = [n for n in names if n not in manager.all_tasks]
    if unknown:
        raise EvalError(f"lmms-eval has no task {unknown}; pass the task pack folder as include_path (write_task_pack)")
    lm = lmms_model or QigbenchVLM(model=model, processor=processor, batch_size=batch_size, device=device)
    raw = simple_evaluate(
        model=lm,
        tasks=names,
        limit=limit,
        task_manager=manager,
        batch_size=batch_size,
        log_samples=True,  # per-example scores: intervals and paired tests (qigbench.stats)
        bootstrap_iters=0,
        verbosity="WARNING",
        process_docs_parallel=1,
    )
    return check_results(raw, names, "lmms")


def evaluate_lm(
    model: nn.Module,
    tokenizer: Any,
    tasks: list[str],
    *,
    include_path: str | Path | list[str] | None = None,
    limit: int | None = None,
    batch_size: int = 1,
    device: str | None = None,
) -> EvalResults:
    """Evaluate an in-memory causal LM on lm-eval tasks through lm-eval's own ``HFLM``."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    resolved = _split(resolve_tasks(tasks), "lm")
    if not resolved:
        raise EvalError(f"none of {tasks} is an lm-eval task; run multimodal tasks with evaluate_vlm")
    names = [t.task for t in resolved]
    manager = TaskManager(include_path=_include(include_path), include_defaults=_include_defaults(resolved))
    unknown = [n for n in names if n not in manager.all_tasks]
    if unknown:
        raise EvalError(f"lm-eval has no task {unknown}; pass the task pack folder as include_path (write_task_pack)")
    device = device or str(next(model.parameters()).device)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device)
    raw = simple_evaluate(model=lm, tasks=names, limit=limit, task_manager=manager, log_samples=True, bootstrap_iters=0)
    return check_results(raw, names, "lm")
