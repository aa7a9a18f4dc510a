"""Measure one task on one model: a harness task (lmms-eval / lm-eval) or the fidelity pseudo-task.

Harness metric names are kept when the results store knows them (``acc``, ``exact_match``,
``anls``...); lm-eval's ``word_perplexity`` is stored as ``ppl`` (the number the paper reports for
WikiText). A task that yields no known metric is an error rather than a silently empty row.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any

from qigbench.errors import QigbenchError
from qigbench.matrix.options import FIDELITY_TASK, SuiteOptions
from qigbench.models.loading import LoadedModel
from qigbench.pipeline import QuantizeResult
from qigbench.results import is_known_metric
from qigbench.stats import ExampleScores

#: Harness metric -> stored metric.
RENAMES = {"word_perplexity": "ppl"}
FIDELITY_PROMPTS = 12


class SuiteEvalError(QigbenchError, RuntimeError):
    """A task produced nothing the results store can hold."""


@dataclass(frozen=True)
class TaskMetrics:
    task: str
    values: dict[str, float] = field(default_factory=dict)
    #: metric -> per-example scores behind its value (prompts, questions), where known
    examples: dict[str, ExampleScores] = field(default_factory=dict)


def evaluate_task(
    task: str,
    model: LoadedModel,
    fp: LoadedModel,
    result: QuantizeResult | None,
    options: SuiteOptions,
    task_pack: Callable[[], Path],
    rng: random.Random,
) -> TaskMetrics:
    if task == FIDELITY_TASK:
        if result is None:
            raise SuiteEvalError(
                "the fidelity task compares a quantized model with its fp original; the fp row has none"
            )
        return fidelity_metrics(model, fp, result, options.device, rng)
    return harness_metrics(task, model, options, task_pack)


def fidelity_batches(fp: LoadedModel, rng: random.Random) -> list[dict[str, Any]]:
    """Held-out prompts (images + questions for a VLM, prose for an LM) seeded apart from calibration."""
    from qigbench.eval.fidelity import text_batches, vlm_batches

    if fp.family.multimodal and fp.processor is not None:
        from qigbench.eval.tasks.render import RENDERERS

        kinds = sorted(RENDERERS)
        samples = [RENDERERS[kinds[i % len(kinds)]](rng) for i in range(FIDELITY_PROMPTS)]
        return vlm_batches(fp.processor, [s.question for s in samples], [s.image for s in samples], batch_size=4)
    from qigbench.eval.tasks.text import paragraph

    return text_batches(fp.tokenizer, [paragraph(rng) for _ in range(FIDELITY_PROMPTS)], batch_size=4)


def fidelity_metrics(
    model: LoadedModel, fp: LoadedModel, result: QuantizeResult, device: str, rng: random.Random
) -> TaskMetrics:
    from qigbench.eval.fidelity import fidelity

    found = fidelity(fp.model, model.model, fidelity_batches(fp, rng), device=device)
    tokens = [float(n) for n in found.prompt_tokens]
    # block error has no examples: its blocks are not exchangeable samples (seeds carry its spread)
    return TaskMetrics(
        FIDELITY_TASK,
        {"kl": found.kl, "flip_rate": found.flip_rate, "block_error": result.report.mean_block_error},
        {
            "kl": ExampleScores.of(found.prompt_kl, tokens),
            "flip_rate": ExampleScores.of(found.prompt_flip_rate, tokens),
        },
    )


def harness_metrics(task: str, model: LoadedModel, options: SuiteOptions, task_pack: Callable[[], Path]) -> TaskMetrics:
    from qigbench.eval.aliases import resolve_task
    from qigbench.eval.runner import evaluate_lm, evaluate_vlm
    from qigbench.eval.tasks import LM_SUBDIR, LMMS_SUBDIR

    resolved = resolve_task(task)
    include = None
    if resolved.pack:
        include = str(task_pack() / (LMMS_SUBDIR if resolved.harness == "lmms" else LM_SUBDIR))
    common: dict[str, Any] = {
        "include_path": include,
        "limit": options.limit,
        "batch_size": options.eval_batch_size,
        "device": options.device,
    }
    if resolved.harness == "lmms":
        if model.processor is None:
            raise SuiteEvalError(f"{task} is a multimodal task but the model has no processor; use a VLM")
        found = evaluate_vlm(model.model, model.processor, [task], **common)
    else:
        found = evaluate_lm(model.model, model.tokenizer, [task], **common)
    per_task = found.metrics
    raw = per_task.get(resolved.task) or _mean_over(per_task)
    values = {RENAMES.get(k, k): v for k, v in raw.items()}
    values = {k: v for k, v in values.items() if is_known_metric(k)}
    scores = found.examples.get(resolved.task, {})  # a group's mean has no single example list
    examples = {RENAMES.get(k, k): e for k, e in scores.items() if RENAMES.get(k, k) in values}
    if not values:
        raise SuiteEvalError(
            f"task {task} reported {sorted(raw)}, none of which the results store knows; register the metric with "
            "qigbench.results.register_metric(NAME, higher_is_better=..., kind=...)"
        )
    return TaskMetrics(task, values, examples)


def _mean_over(per_task: dict[str, dict[str, float]]) -> dict[str, float]:
    """A group's metrics as the mean of its members (lm-eval / lmms-eval groups)."""
    names = {m for metrics in per_task.values() for m in metrics}
    return {m: mean(v[m] for v in per_task.values() if m in v) for m in names}
