"""Language models through the real lm-eval (HFLM wrapping an in-memory model) on the local text tasks."""

from __future__ import annotations

import pytest

from qigbench.eval.runner import evaluate_lm
from qigbench.eval.tasks import LM_SUBDIR

TASKS = ["qig_text_ppl", "qig_text_mc"]


def test_tiny_llama_perplexity_and_accuracy(pack, tiny_lm):
    res = evaluate_lm(
        tiny_lm.model, tiny_lm.tokenizer, TASKS, include_path=pack / LM_SUBDIR, limit=8, batch_size=4, device="cpu"
    )
    ppl = res.metrics["qig_text_ppl"]
    assert ppl["word_perplexity"] > 1.0 and ppl["byte_perplexity"] > 1.0 and ppl["bits_per_byte"] > 0.0
    assert 0.0 <= res.metrics["qig_text_mc"]["acc"] <= 1.0
    assert "qig_text_mc" in res.table()


@pytest.mark.slow
@pytest.mark.smollm2
def test_smollm2_beats_a_random_model_on_the_local_text(pack, tiny_lm):
    from qigbench.models.loading import load_model
    from qigbench.models.smollm2 import ensure_smollm2

    smol = load_model(ensure_smollm2())
    res = evaluate_lm(
        smol.model, smol.tokenizer, TASKS, include_path=pack / LM_SUBDIR, limit=16, batch_size=8, device="cpu"
    )
    rand = evaluate_lm(
        tiny_lm.model, tiny_lm.tokenizer, ["qig_text_ppl"], include_path=pack / LM_SUBDIR, limit=16, device="cpu"
    )
    # real English model on grammatical prose: far below the random model's perplexity
    assert res.metrics["qig_text_ppl"]["word_perplexity"] < rand.metrics["qig_text_ppl"]["word_perplexity"] / 10
    assert 0.0 <= res.metrics["qig_text_mc"]["acc"] <= 1.0
