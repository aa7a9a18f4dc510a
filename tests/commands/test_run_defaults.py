"""``qigbench run``'s defaults: a model's own tasks and formats, and a summary that says what the
run's model can show (``-o`` is main's: tests/commands for method options)."""

from __future__ import annotations

from qigbench.commands.run import REAL_WEIGHTS_RUN, model_notes
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


def test_the_summary_says_random_weights_cannot_discriminate_and_names_the_real_model() -> None:
    [tiny] = model_notes(("tiny-qwen2vl",))
    assert "random weights" in tiny and "cannot tell methods apart" in tiny and REAL_WEIGHTS_RUN in tiny
    [real] = model_notes(("smollm2-llava",))
    assert "real SmolLM2-135M decoder" in real and "W3A16g64" in real
