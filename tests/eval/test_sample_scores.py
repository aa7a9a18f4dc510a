"""Per-example scores from a harness's logged samples: kept only where the metric is their mean."""

from __future__ import annotations

import pytest

from qigbench.eval.runner import check_results, sample_scores


def test_scores_pair_by_doc_id_and_give_back_the_aggregate() -> None:
    samples = [{"doc_id": d, "filter": "none", "acc": v, "acc_norm": 1.0} for d, v in ((2, 1.0), (0, 0.0), (10, 1.0))]
    samples += [{"doc_id": 0, "filter": "strict", "acc": 1.0}]  # a second filter's copy is not mixed in
    found = sample_scores(samples, {"acc": 2 / 3, "acc_norm": 1.0})
    assert found["acc"].ids == ("0", "2", "10") and found["acc"].values == (0.0, 1.0, 1.0)
    assert found["acc"].mean() == pytest.approx(2 / 3)


def test_metric_that_is_not_a_mean_of_its_samples_is_left_out() -> None:
    samples = [{"doc_id": i, "word_perplexity": (-3.0, 4), "exact_match": 0.0} for i in range(3)]
    # perplexity's per-sample value is a (loglik, words) pair; exact_match's mean (0) != reported 0.5
    assert sample_scores(samples, {"word_perplexity": 12.0, "exact_match": 0.5}) == {}


def test_check_results_attaches_examples_per_task() -> None:
    raw = {
        "results": {"t": {"alias": "t", "acc,none": 0.5, "acc_stderr,none": 0.1}},
        "samples": {"t": [{"doc_id": 0, "acc": 1.0}, {"doc_id": 1, "acc": 0.0}]},
    }
    found = check_results(raw, ["t"], "lm")
    assert found.examples["t"]["acc"].values == (1.0, 0.0)
    del raw["samples"]
    assert check_results(raw, ["t"], "lm").examples == {}


def test_per_prompt_fidelity_weighted_by_tokens_gives_back_the_token_average() -> None:
    import torch

    from qigbench.eval.fidelity import batch_fidelity, prompt_fidelity
    from qigbench.stats import ExampleScores

    gen = torch.Generator().manual_seed(0)
    fp, q = torch.randn(3, 7, 11, generator=gen), torch.randn(3, 7, 11, generator=gen)
    mask = torch.tensor([[1] * 7, [1] * 3 + [0] * 4, [0] * 2 + [1] * 5])  # left and right padding
    total_kl, flips, tokens, _ = batch_fidelity(fp, q, mask)
    per = prompt_fidelity(fp, q, mask)
    assert [n for _, _, n in per] == [7, 3, 5]
    weights = [float(n) for _, _, n in per]
    assert ExampleScores.of([k for k, _, _ in per], weights).mean() == pytest.approx(total_kl / tokens)
    assert ExampleScores.of([f for _, f, _ in per], weights).mean() == pytest.approx(flips / tokens)
