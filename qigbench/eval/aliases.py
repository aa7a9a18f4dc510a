"""The paper's benchmark names mapped to the harnesses' own task names, and an offline data check.

The paper says "VizWiz, MMMU, ChartQA, ..." (lmms-eval) and "PIQA, ARC-e, ARC-c, MMLU, WikiText"
(lm-eval); researchers expect exactly the harness protocols, so an alias is only a name: the
task YAML, prompt and metric are the harness's. Before running, :func:`check_offline_data` turns
"dataset not in the cache" into a :class:`MissingDatasetError` that says which dataset is missing
and how to provide it, instead of a stack trace from inside ``datasets``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from qigbench.eval.errors import MissingDatasetError, UnknownTaskError
from qigbench.eval.tasks.pack import LM_TASKS, LMMS_TASKS, PACK_GROUP

Harness = Literal["lmms", "lm"]


@dataclass(frozen=True)
class TaskAlias:
    """A paper benchmark: which harness runs it, under which task name, on which HF dataset."""

    alias: str
    harness: Harness
    task: str  # the harness's task (or group) name
    dataset: str  # HF dataset id the harness YAML loads (``dataset_path``)
    config: str | None = None  # ``dataset_name``, when the YAML sets one


PAPER_TASKS: dict[str, TaskAlias] = {
    a.alias: a
    for a in (
        TaskAlias("vizwiz", "lmms", "vizwiz_vqa_val", "lmms-lab-encoder/VizWiz-VQA"),
        TaskAlias("mmmu", "lmms", "mmmu_val", "lmms-lab-encoder/MMMU"),
        TaskAlias("chartqa", "lmms", "chartqa", "lmms-lab-encoder/ChartQA"),
        TaskAlias("ai2d", "lmms", "ai2d", "lmms-lab-encoder/ai2d"),
        TaskAlias("scienceqa", "lmms", "scienceqa_img", "lmms-lab-encoder/ScienceQA", "ScienceQA-IMG"),
        TaskAlias("docvqa", "lmms", "docvqa_val", "lmms-lab-encoder/DocVQA", "DocVQA"),
        TaskAlias("ocrbench", "lmms", "ocrbench", "echo840/OCRBench"),
        TaskAlias("piqa", "lm", "piqa", "baber/piqa"),
        TaskAlias("arc_e", "lm", "arc_easy", "allenai/ai2_arc", "ARC-Easy"),
        TaskAlias("arc_c", "lm", "arc_challenge", "allenai/ai2_arc", "ARC-Challenge"),
        TaskAlias("mmlu", "lm", "mmlu", "cais/mmlu", "abstract_algebra"),
        TaskAlias("wikitext", "lm", "wikitext", "EleutherAI/wikitext_document_level", "wikitext-2-raw-v1"),
    )
}


@dataclass(frozen=True)
class ResolvedTask:
    """A requested name resolved to a harness task; ``pack`` tasks need no download."""

    requested: str
    harness: Harness
    task: str
    pack: bool
    alias: TaskAlias | None = None


def resolve_task(name: str) -> ResolvedTask:
    """Map a paper alias, a pack task (``qig_*``) or a harness task name (``lmms:NAME`` / ``lm:NAME``)."""
    if name in PAPER_TASKS:
        alias = PAPER_TASKS[name]
        return ResolvedTask(name, alias.harness, alias.task, pack=False, alias=alias)
    if name in LMMS_TASKS or name == PACK_GROUP:
        return ResolvedTask(name, "lmms", name, pack=True)
    if name in LM_TASKS:
        return ResolvedTask(name, "lm", name, pack=True)
    harness, sep, task = name.partition(":")
    if sep and harness in ("lmms", "lm") and task:
        return ResolvedTask(name, harness, task, pack=False)  # type: ignore[arg-type]
    known = ", ".join([*PAPER_TASKS, PACK_GROUP, *LMMS_TASKS, *LM_TASKS])
    raise UnknownTaskError(
        f"unknown task {name!r}. Use a paper alias or a pack task ({known}), "
        "or a harness task by name as 'lmms:TASK' (lmms-eval) or 'lm:TASK' (lm-eval)"
    )


def resolve_tasks(names: list[str]) -> list[ResolvedTask]:
    return [resolve_task(n.strip()) for n in names if n.strip()]


def check_offline_data(alias: TaskAlias) -> None:
    """Raise :class:`MissingDatasetError` unless ``alias``'s dataset can be loaded right now.

    Online this is a cheap metadata lookup; offline (``HF_DATASETS_OFFLINE=1``) it succeeds only
    when the dataset is already in the HF datasets cache.
    """
    import datasets

    from qigbench.models.hub import hub_status, unreachable_reason

    hub_status()  # an unreachable hub: offline now, so the lookup below answers from the cache at once
    try:
        datasets.load_dataset_builder(alias.dataset, alias.config)
    except Exception as err:  # datasets raises ConnectionError, FileNotFoundError, DatasetNotFoundError...
        offline = os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"
        harness = "lmms-eval" if alias.harness == "lmms" else "lm-eval"
        hub = unreachable_reason() or "the hub is offline"
        where = f"not in the Hugging Face datasets cache and {hub}" if offline else f"not loadable ({err})"
        config = f" (config {alias.config!r})" if alias.config else ""
        raise MissingDatasetError(
            f"task {alias.alias!r} ({harness} task {alias.task!r}) needs the dataset {alias.dataset!r}{config}, "
            f"which is {where}. Provide it either way: (1) HF cache — on a machine with internet run "
            f"`python -c \"import datasets; datasets.load_dataset('{alias.dataset}'"
            f'{", " + repr(alias.config) if alias.config else ""})"` and copy the cache '
            f"(HF_DATASETS_CACHE / HF_HOME) here; or (2) local path — write a task YAML that includes the "
            f"harness task and sets `dataset_path: /path/to/data` (parquet/arrow files), and pass its "
            f"folder with --include-path."
        ) from err


def missing_data(names: list[str]) -> dict[str, str]:
    """``{task: message}`` for every requested task whose dataset cannot be loaded now.

    Checked for all tasks at once, before any calibration, so a run says in one go which benchmarks
    are missing (pack tasks, ``fidelity`` and ``lmms:``/``lm:`` names the harness resolves itself are
    not checked here). Each dataset is looked up once."""
    found: dict[str, str] = {}
    seen: dict[tuple[str, str | None], str | None] = {}
    for name in dict.fromkeys(names):
        try:
            resolved = resolve_task(name)
        except UnknownTaskError:
            continue  # not a task (e.g. the fidelity pseudo-task); unknown names fail where they are used
        alias = resolved.alias
        if alias is None:
            continue
        key = (alias.dataset, alias.config)
        if key not in seen:
            try:
                check_offline_data(alias)
                seen[key] = None
            except MissingDatasetError as err:
                seen[key] = str(err)
        if seen[key] is not None:
            found[name] = str(seen[key])
    return found
