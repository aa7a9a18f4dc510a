"""Write the offline task pack: seeded data (parquet) plus task YAMLs in the harnesses' own format.

``write_task_pack(dir, seed, n)`` writes two folders, each an ``include_path`` for one harness::

    dir/lmms/  lmms-eval tasks (qig_vqa_colour, ..., group qig_pack)   -> TaskManager(include_path=...)
    dir/lm/    lm-eval tasks (qig_text_ppl, qig_text_mc)                -> lm_eval TaskManager(include_path=...)

The YAMLs are the templates in ``templates/`` with the task name and the parquet path filled in;
nothing about the harnesses is patched, so these tasks exercise exactly the code paths the paper's
benchmarks use (images through ``doc_to_visual``, ``exact_match`` / ``acc`` metrics,
``loglikelihood_rolling`` perplexity).
"""

from __future__ import annotations

import random
from importlib import resources
from pathlib import Path

import qigbench.eval.tasks.render as render
import qigbench.eval.tasks.text as text
from qigbench.eval.errors import EvalError

LMMS_SUBDIR = "lmms"
LM_SUBDIR = "lm"
PACK_GROUP = "qig_pack"

#: lmms-eval task name -> (renderer key in render.RENDERERS, template)
LMMS_TASKS: dict[str, tuple[str, str]] = {
    "qig_vqa_colour": ("colour", "generate"),
    "qig_vqa_shape": ("shape", "generate"),
    "qig_vqa_count": ("count", "generate"),
    "qig_ocr": ("ocr", "generate"),
    "qig_mc_chart": ("chart", "choice"),
    "qig_mc_diagram": ("diagram", "choice"),
}
#: lm-eval task name -> template
LM_TASKS: dict[str, str] = {"qig_text_ppl": "perplexity", "qig_text_mc": "choice"}


def _template(harness: str, name: str) -> str:
    return resources.files("qigbench.eval.tasks").joinpath("templates", harness, f"{name}.yaml").read_text()


def _write_yaml(folder: Path, task: str, template: str, data: Path) -> None:
    body = template.replace("__TASK__", task).replace("__DATA__", str(data.resolve()))
    (folder / f"{task}.yaml").write_text(body)


def _write_parquet(rows: list[dict], path: Path, with_image: bool) -> None:
    import datasets  # heavy: only when a pack is written

    features = {"question": datasets.Value("string"), "answer": datasets.Value("string")}
    if with_image:
        features["image"] = datasets.Image()
    if "choices" in rows[0]:
        features["choices"] = datasets.Sequence(datasets.Value("string"))
        features["label"] = datasets.Value("int64")
    if "text" in rows[0]:
        features = {"text": datasets.Value("string")}
    columns = {key: [row[key] for row in rows] for key in features}
    quiet = not datasets.utils.logging.is_progress_bar_enabled()
    datasets.utils.logging.disable_progress_bar()  # a pack is a few tiny files: no bars
    try:
        datasets.Dataset.from_dict(columns, features=datasets.Features(features)).to_parquet(str(path))
    finally:
        if not quiet:
            datasets.utils.logging.enable_progress_bar()


def write_lmms_tasks(folder: Path, seed: int, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for offset, (task, (kind, template)) in enumerate(LMMS_TASKS.items()):
        rng = random.Random(seed * 1000 + offset)
        rows = []
        for _ in range(n):
            sample = render.RENDERERS[kind](rng)
            row = {"question": sample.question, "answer": sample.answer, "image": sample.image}
            if template == "choice":
                row |= {"choices": sample.choices, "label": sample.label}
            rows.append(row)
        data = folder / f"{task}.parquet"
        _write_parquet(rows, data, with_image=True)
        _write_yaml(folder, task, _template(LMMS_SUBDIR, template), data)
    group = _template(LMMS_SUBDIR, "group").replace("__TASKS__", "[" + ", ".join(LMMS_TASKS) + "]")
    (folder / f"{PACK_GROUP}.yaml").write_text(group)


def write_lm_tasks(folder: Path, seed: int, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed * 1000 + 999)
    ppl_rows = [{"text": text.paragraph(rng)} for _ in range(n)]
    mc_rows = []
    for _ in range(n):
        question, choices, label = text.arithmetic_question(rng)
        mc_rows.append({"question": question, "answer": choices[label], "choices": choices, "label": label})
    for task, rows in (("qig_text_ppl", ppl_rows), ("qig_text_mc", mc_rows)):
        data = folder / f"{task}.parquet"
        _write_parquet(rows, data, with_image=False)
        _write_yaml(folder, task, _template(LM_SUBDIR, LM_TASKS[task]), data)


def write_task_pack(directory: str | Path, seed: int = 0, n: int = 32) -> Path:
    """Write the whole pack under ``directory`` (created if needed) and return it.

    ``n`` examples per task; the same ``seed`` and ``n`` give byte-identical data.
    Use ``directory / LMMS_SUBDIR`` and ``directory / LM_SUBDIR`` as the harnesses' include paths.
    """
    if n < 1:
        raise EvalError(f"task pack size n must be >= 1 (got {n}); pass e.g. n=32")
    root = Path(directory)
    write_lmms_tasks(root / LMMS_SUBDIR, seed, n)
    write_lm_tasks(root / LM_SUBDIR, seed, n)
    return root
