"""The offline task pack: deterministic, in the harnesses' format, answers recoverable from pixels."""

from __future__ import annotations

import random

import datasets
import pytest
from eval_oracle import read_answer

from qigbench.eval.errors import EvalError
from qigbench.eval.tasks import LM_SUBDIR, LM_TASKS, LMMS_SUBDIR, LMMS_TASKS, render, write_task_pack


def test_same_seed_same_data_other_seed_other_data(tmp_path):
    a = write_task_pack(tmp_path / "a", seed=3, n=4)
    b = write_task_pack(tmp_path / "b", seed=3, n=4)
    c = write_task_pack(tmp_path / "c", seed=4, n=4)
    load = lambda root: datasets.Dataset.from_parquet(str(root / LMMS_SUBDIR / "qig_vqa_colour.parquet"))  # noqa: E731
    assert load(a)["answer"] == load(b)["answer"]
    assert [d["image"].tobytes() for d in load(a)] == [d["image"].tobytes() for d in load(b)]
    assert [d["image"].tobytes() for d in load(a)] != [d["image"].tobytes() for d in load(c)]


def test_pack_lists_every_task_with_n_rows(pack):
    for task in LMMS_TASKS:
        ds = datasets.Dataset.from_parquet(str(pack / LMMS_SUBDIR / f"{task}.parquet"))
        assert len(ds) == 40 and isinstance(ds.features["image"], datasets.Image)
        assert str(pack / LMMS_SUBDIR / f"{task}.parquet") in (pack / LMMS_SUBDIR / f"{task}.yaml").read_text()
    for task in LM_TASKS:
        assert (pack / LM_SUBDIR / f"{task}.yaml").is_file()


@pytest.mark.parametrize("kind", sorted(render.RENDERERS))
def test_ground_truth_is_in_the_pixels(kind):
    rng = random.Random(11)
    for _ in range(30):
        sample = render.RENDERERS[kind](rng)
        assert read_answer(kind, sample.image, {"answer": sample.answer}) == sample.answer
        if sample.choices:
            assert sample.choices[sample.label] == sample.answer


def test_answers_are_spread_over_classes(pack):
    ds = datasets.Dataset.from_parquet(str(pack / LMMS_SUBDIR / "qig_mc_chart.parquet"))
    assert len(set(ds["label"])) >= 3  # otherwise "always A" would look like skill


def test_bad_size_names_the_fix(tmp_path):
    with pytest.raises(EvalError, match="n=32"):
        write_task_pack(tmp_path, n=0)
