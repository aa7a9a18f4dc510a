"""Q-VLM's statistics: the entropy of a uniform spread is log T, the dependency of a layer on an
identical input is log T, dead channels stay finite (and are reported), and the range-update gate
reproduces the released code's rule on a synthetic score sequence."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from qigbench.sensitivity.entropy import conditional_entropy, token_entropy, update_flag


@pytest.mark.parametrize("tokens", [4, 17, 256])
def test_entropy_of_a_uniform_spread_is_log_t(tokens: int) -> None:
    x = torch.full((2, tokens, 5), -3.0)  # |x| identical on every token
    assert token_entropy(x, norm="l1") == pytest.approx(math.log(tokens), rel=1e-5)
    # the release's L2 normalisation is not a distribution: it gives sqrt(T) log(sqrt(T)) / ... instead
    assert token_entropy(x, norm="l2") == pytest.approx(math.sqrt(tokens) * math.log(math.sqrt(tokens)), rel=1e-4)


def test_entropy_of_a_one_hot_spread_is_zero_and_masking_counts_only_valid_tokens() -> None:
    x = torch.zeros(1, 8, 3)
    x[0, 2] = 5.0
    assert token_entropy(x, norm="l1") == pytest.approx(0.0, abs=1e-5)
    y = torch.ones(1, 8, 3)
    mask = torch.tensor([[True] * 5 + [False] * 3])
    assert token_entropy(y, mask, norm="l1") == pytest.approx(math.log(5), rel=1e-5)


@pytest.mark.parametrize("tokens", [6, 64])
def test_dependency_of_identical_inputs_is_log_t(tokens: int) -> None:
    x = torch.rand(2, tokens, 7) + 0.5
    # K = Q / (P + eps) is uniform up to eps; J = P^2 / sum P^2 sums to 1: D = log T
    assert conditional_entropy(x, x) == pytest.approx(math.log(tokens), rel=1e-3)
    y = torch.rand(2, tokens, 7) + 0.5
    assert conditional_entropy(x, y) != pytest.approx(math.log(tokens), rel=1e-3)


def test_dead_channels_give_finite_scores_and_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    x = torch.rand(1, 10, 4)
    x[..., 1] = 0.0
    with caplog.at_level(logging.WARNING):
        h = token_entropy(x, norm="l1")
        h2 = token_entropy(x, norm="l2")
        d = conditional_entropy(x, x)
    assert all(math.isfinite(v) for v in (h, h2, d))
    assert "zero on every token" in caplog.text


def test_gate_reproduces_the_released_flag_pattern() -> None:
    scores: list[float] = []
    # block 0 (j = 1 in the code): forced; block 1: the gate decides; block 3 (j = 4): forced
    assert update_flag(None, scores, block=0, first_linear=True, first_call=False)
    scores[:] = [1.0, 5.0, 3.0]  # mean 3
    assert update_flag(5.0, scores, block=1, first_linear=False, first_call=False)  # 5 >= 3
    assert not update_flag(2.0, scores, block=1, first_linear=False, first_call=False)  # 2 < 3
    assert update_flag(3.0, scores, block=2, first_linear=False, first_call=False)  # ties update
    assert update_flag(0.0, scores, block=3, first_linear=False, first_call=False)  # forced (j mod 3 == 1)
    assert update_flag(0.0, scores, block=1, first_linear=False, first_call=True)  # a module's first call
    assert not update_flag(36.0, scores, block=1, first_linear=False, first_call=False, threshold=37.0)
    assert update_flag(0.0, scores, block=3, first_linear=False, first_call=False, force_every=0) is False
