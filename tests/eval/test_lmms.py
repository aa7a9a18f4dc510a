"""VLMs through the real lmms-eval (in process): tiny model, oracle, random guesser, harness traps."""

from __future__ import annotations

import math

import pytest
from eval_oracle import OracleVLM, RandomVLM
from lmms_eval.api.instance import unwrap_generation_output

from qigbench.eval.errors import EvalError
from qigbench.eval.lmms_model import QigbenchVLM, harness_loglikelihood_output
from qigbench.eval.runner import check_results, evaluate_vlm
from qigbench.eval.tasks import LMMS_SUBDIR, LMMS_TASKS

GENERATE = [t for t, (_, kind) in LMMS_TASKS.items() if kind == "generate"]
CHOICE = [t for t, (_, kind) in LMMS_TASKS.items() if kind == "choice"]


def test_unwrap_trap_exists_and_the_workaround_keeps_the_pair():
    # the 0.7.3 bug this wrapper works around: a plain (float, bool) pair becomes a string
    assert isinstance(unwrap_generation_output((-1.5, True))[0], str)
    assert unwrap_generation_output(harness_loglikelihood_output(1.5, True))[0] == (1.5, True)


def test_tiny_vlm_generation_and_choice_give_real_numbers(pack, tiny_vlm):
    vlm = QigbenchVLM(model=tiny_vlm.model, processor=tiny_vlm.processor, batch_size=4)
    for _ in range(2):  # a second run on the same instance: lmms-eval's clean() must not drop the model
        res = evaluate_vlm(
            None, None, ["qig_vqa_colour", "qig_mc_chart"], include_path=pack / LMMS_SUBDIR, limit=6, lmms_model=vlm
        )
    assert 0.0 <= res.metrics["qig_vqa_colour"]["exact_match"] <= 1.0
    assert 0.0 <= res.metrics["qig_mc_chart"]["acc"] <= 1.0
    assert res.raw["results"]["qig_mc_chart"]["acc,none"] == res.metrics["qig_mc_chart"]["acc"]


def test_choice_nll_is_a_negative_loglikelihood(pack, tiny_vlm):
    vlm = QigbenchVLM(model=tiny_vlm.model, processor=tiny_vlm.processor)
    from PIL import Image

    from qigbench.eval.lmms_model import Request

    img = Image.new("RGB", (56, 56), (255, 0, 0))
    one, two = vlm.choice_nll(
        [Request("Colour?", [img], None, None, " red"), Request("Colour?", [img], None, None, " red red")]
    )
    assert one[0] > 0 and two[0] > one[0]  # -log p over more tokens is larger, never negative


def test_oracle_scores_one_on_the_whole_pack(pack, tiny_vlm):
    oracle = OracleVLM(model=tiny_vlm.model, processor=tiny_vlm.processor, batch_size=8)
    res = evaluate_vlm(None, None, ["qig_pack"], include_path=pack / LMMS_SUBDIR, lmms_model=oracle)
    assert {t: res.metrics[t]["exact_match"] for t in GENERATE} == dict.fromkeys(GENERATE, 1.0)
    assert {t: res.metrics[t]["acc"] for t in CHOICE} == dict.fromkeys(CHOICE, 1.0)


def test_random_model_scores_near_chance(pack, tiny_vlm):
    guesser = RandomVLM(model=tiny_vlm.model, processor=tiny_vlm.processor, batch_size=8)
    res = evaluate_vlm(None, None, ["qig_pack"], include_path=pack / LMMS_SUBDIR, lmms_model=guesser)
    for task in CHOICE:  # 4 choices, 40 docs: chance 0.25, sd 0.07
        assert 0.08 <= res.metrics[task]["acc"] <= 0.45, (task, res.metrics[task])
    for task in GENERATE:  # at most 1/3 by luck (shape), 0 for OCR numbers
        assert res.metrics[task]["exact_match"] <= 0.6, (task, res.metrics[task])


def test_missing_results_raise_instead_of_exit_zero():
    with pytest.raises(EvalError, match="no results"):
        check_results(None, ["qig_ocr"], "lmms")
    raw = {"results": {"qig_ocr": {"alias": "qig_ocr", "exact_match,none": math.nan}}}
    with pytest.raises(EvalError, match="qig_ocr"):
        check_results(raw, ["qig_ocr"], "lmms")
