"""smollm2-llava never trained on a held-out item: checked against the evaluation pack's own files."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from qigbench.eval.tasks import LMMS_SUBDIR, LMMS_TASKS, write_task_pack
from qigbench.models.smollm2_llava import training_record
from qigbench.training.items import (
    EVAL_HORIZON,
    EVAL_SEEDS,
    LAYOUT_EXCLUDED,
    TASK_OF_KIND,
    TRAIN_KINDS,
    image_hash,
    prompt_and_target,
    training_item,
    training_pool,
)


def _pack_hashes(root: Path, seed: int, n: int) -> dict[str, set[str]]:
    """Image hashes of every pack task, read back from the parquet files the harness reads."""
    import datasets
    from PIL import Image

    pack = write_task_pack(root / f"pack-{seed}", seed=seed, n=n)
    out: dict[str, set[str]] = {}
    for task in LMMS_TASKS:
        table = datasets.Dataset.from_parquet(str(pack / LMMS_SUBDIR / f"{task}.parquet"))
        table = table.cast_column("image", datasets.Image(decode=False))
        out[task] = {image_hash(Image.open(io.BytesIO(row["image"]["bytes"])).convert("RGB")) for row in table}
    return out


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """The pack at every guarded seed, EVAL_HORIZON items a task (``qigbench run --limit`` up to it)."""
    root = tmp_path_factory.mktemp("packs")
    merged: dict[str, set[str]] = {}
    for seed in EVAL_SEEDS:
        for task, hashes in _pack_hashes(root, seed, EVAL_HORIZON).items():
            merged.setdefault(task, set()).update(hashes)
    return merged


def test_the_committed_training_pool_shares_no_image_and_no_chart_layout_with_the_pack(
    held_out: dict[str, set[str]],
) -> None:
    config = training_record().get("config", {"pool": 5000, "seed": 0})
    pool = training_pool(config["pool"], config["seed"])
    every_eval_image = set().union(*held_out.values())
    assert not {image_hash(item.image) for item in pool} & every_eval_image
    for kind in LAYOUT_EXCLUDED:
        sources = {item.source_hash for item in pool if item.kind == kind}
        assert sources and not sources & held_out[TASK_OF_KIND[kind]]
    # every kind is trained on, in equal shares
    counts = {kind: sum(item.kind == kind for item in pool) for kind in TRAIN_KINDS}
    assert max(counts.values()) - min(counts.values()) <= 1


def test_without_the_exclusion_the_pool_would_overlap(held_out: dict[str, set[str]]) -> None:
    """The check above can fail: unperturbed renderings of the small kinds are the pack's images."""
    import random

    from qigbench.eval.tasks.render import RENDERERS

    canonical = {image_hash(RENDERERS["colour"](random.Random(i)).image) for i in range(50)}
    assert canonical & held_out["qig_vqa_colour"]


def test_items_are_deterministic_and_in_the_harness_format() -> None:
    a, b = training_item(0, 3), training_item(0, 3)
    assert image_hash(a.image) == image_hash(b.image) and a.target == b.target
    assert image_hash(training_item(1, 3).image) != image_hash(a.image)
    chart = next(training_item(0, i) for i in range(10) if training_item(0, i).kind == "chart")
    assert chart.prompt.endswith("\nAnswer:") and chart.target in (" A", " B", " C", " D")
    colour = training_item(0, 0)
    assert colour.kind == "colour" and not colour.target.startswith(" ")


def test_prompt_and_target_follow_the_task_templates() -> None:
    import random

    from qigbench.eval.tasks.render import make_diagram

    sample = make_diagram(random.Random(0))
    prompt, target = prompt_and_target("diagram", sample)
    assert prompt == sample.question + "\nAnswer:" and target == " " + sample.choices[sample.label]
