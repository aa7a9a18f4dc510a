"""``qigbench run``'s defaults: a model's own tasks and formats, ``-o`` for the methods that have
it, and a summary that says what the run's model can show."""

from __future__ import annotations

import pytest

from qigbench.commands.run import REAL_WEIGHTS_RUN, model_notes, with_method_options
from qigbench.errors import QigbenchError
from qigbench.matrix.cases import table2
from qigbench.matrix.options import TINY_VLM_TASKS, build_options, model_defaults
from qigbench.models.families.llava import SMOLLM2_LLAVA_TASKS


def test_smollm2_llava_brings_its_own_tasks_and_formats() -> None:
    assert model_defaults(["smollm2-llava"], "formats") == ("W3A16g64", "W4A8")
    assert model_defaults(["smollm2-llava"], "tasks") == SMOLLM2_LLAVA_TASKS
    assert model_defaults(["tiny-qwen2vl"], "tasks") == ()
    assert model_defaults(["smollm2-llava", "tiny-qwen2vl"], "tasks") == ()  # they disagree: tier defaults
    options = build_options(models="smollm2-llava", verify_device=False)
    assert options.vlm_tasks() == SMOLLM2_LLAVA_TASKS
    assert build_options(models="tiny-qwen2vl", verify_device=False).vlm_tasks() == TINY_VLM_TASKS


def test_method_options_reach_only_the_methods_that_have_them() -> None:
    options = build_options(models="tiny-qwen2vl", methods="rtn,qig,qig-gptq", formats="W4A8", verify_device=False)
    [matrix] = with_method_options([table2(options)], ["qig.steps=32"])
    stored = {case.method: case.stored_method for case, _ in matrix}
    assert stored == {"fp16": "fp16", "rtn": "rtn", "qig": "qig [qig.steps=32]", "qig-gptq": "qig+gptq [qig.steps=32]"}
    hashes = {case.method: case.config_hash() for case, _ in table2(options)}
    assert all(case.config_hash() != hashes[case.method] for case, _ in matrix if case.method.startswith("qig"))
    with pytest.raises(QigbenchError, match="no method of this run has"):
        with_method_options([table2(options)], ["nonexistent=1"])
    with pytest.raises(QigbenchError, match="should be an int"):
        with_method_options([table2(options)], ["qig.steps=many"])


def test_the_summary_says_random_weights_cannot_discriminate_and_names_the_real_model() -> None:
    [tiny] = model_notes(("tiny-qwen2vl",))
    assert "random weights" in tiny and "cannot tell methods apart" in tiny and REAL_WEIGHTS_RUN in tiny
    [real] = model_notes(("smollm2-llava",))
    assert "real SmolLM2-135M decoder" in real and "W3A16g64" in real
