"""Fidelity metrics: the KL / flip laws, padding masking, and the real models (fp vs RTN)."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from qigbench.eval.fidelity import batch_fidelity, fidelity, text_batches, token_kl, vlm_batches
from qigbench.eval.tasks import render
from qigbench.quant import quantize_linears_

PROMPTS = ["Yesterday the old dog found a book.", "What is 3 plus 4?", "The river was quiet in the morning and"]


@given(st.integers(0, 10_000), st.floats(0.1, 5.0))
def test_kl_is_nonnegative_zero_on_self_and_shift_invariant(seed, scale):
    g = torch.Generator().manual_seed(seed)
    p, q = torch.randn(3, 5, 11, generator=g) * scale, torch.randn(3, 5, 11, generator=g) * scale
    assert (token_kl(p, q) >= 0).all()
    assert torch.allclose(token_kl(p, p), torch.zeros(3, 5), atol=1e-6)
    assert torch.allclose(token_kl(p, q), token_kl(p + 7.0, q - 3.0), atol=1e-4)  # softmax ignores shifts


def test_kl_matches_the_definition_on_a_known_pair():
    p, q = torch.tensor([0.5, 0.5]), torch.tensor([0.9, 0.1])
    expected = 0.5 * torch.log(torch.tensor(0.5 / 0.9)) + 0.5 * torch.log(torch.tensor(0.5 / 0.1))
    assert torch.allclose(token_kl(p.log(), q.log()), expected, atol=1e-6)


def test_padding_is_masked():
    g = torch.Generator().manual_seed(0)
    fp, q = torch.randn(2, 4, 9, generator=g), torch.randn(2, 4, 9, generator=g)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    q_changed = q.clone()
    q_changed[0, 2:] = torch.randn(2, 9, generator=g)  # garbage at padded positions only
    assert batch_fidelity(fp, q, mask) == batch_fidelity(fp, q_changed, mask)
    assert batch_fidelity(fp, q, mask)[2] == 6


def test_tiny_lm_against_itself_and_a_quantized_copy(tiny_lm):
    batches = text_batches(tiny_lm.tokenizer, PROMPTS)
    same = fidelity(tiny_lm.model, tiny_lm.model, batches)
    assert same.kl == 0.0 and same.flip_rate == 0.0 and same.tokens > 10
    q = copy.deepcopy(tiny_lm.model)
    quantize_linears_(q, "W2A16g16", include=lambda name, _: "lm_head" not in name)
    assert fidelity(tiny_lm.model, q, batches).kl > 0.0


def test_vlm_with_images(tiny_vlm):
    import random

    rng = random.Random(0)
    samples = [render.make_colour(rng) for _ in range(3)]
    batches = vlm_batches(tiny_vlm.processor, [s.question for s in samples], [s.image for s in samples], batch_size=2)
    assert "pixel_values" in batches[0]
    same = fidelity(tiny_vlm.model, tiny_vlm.model, batches)
    assert same.kl == 0.0 and same.flip_rate == 0.0
    q = copy.deepcopy(tiny_vlm.model)
    quantize_linears_(q, "W2A16g16", include=lambda name, _: "lm_head" not in name and "visual" not in name)
    assert fidelity(tiny_vlm.model, q, batches).kl > 0.0


@pytest.mark.slow
@pytest.mark.smollm2
def test_kl_and_flips_grow_from_w8_to_w4_to_w3_on_smollm2():
    from qigbench.eval.tasks import text
    from qigbench.models.loading import load_model
    from qigbench.models.smollm2 import ensure_smollm2

    smol = load_model(ensure_smollm2())
    rng = __import__("random").Random(1)
    batches = text_batches(smol.tokenizer, [text.paragraph(rng, 3) for _ in range(8)], batch_size=4)
    self_check = fidelity(smol.model, smol.model, batches[:1])
    assert self_check.kl == 0.0 and self_check.flip_rate == 0.0
    results = {}
    for fmt in ("W8A16g64", "W4A16g64", "W3A16g64"):
        q = copy.deepcopy(smol.model)
        quantize_linears_(q, fmt, include=lambda name, _: "lm_head" not in name)
        results[fmt] = fidelity(smol.model, q, batches)
        del q
    kl = [results[f].kl for f in ("W8A16g64", "W4A16g64", "W3A16g64")]
    flips = [results[f].flip_rate for f in ("W8A16g64", "W4A16g64", "W3A16g64")]
    print({f: r.as_dict() for f, r in results.items()})
    assert kl[0] < kl[1] < kl[2] and flips[0] < flips[1] < flips[2]
