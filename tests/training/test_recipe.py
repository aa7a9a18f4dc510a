"""The training code's defaults are the recipe that made the committed weights (so retraining with
no arguments reproduces them: recipe v2), and recipe v1 (no per-patch heads) stays one switch away."""

from __future__ import annotations

from dataclasses import asdict

import torch

from qigbench.models.smollm2_llava import training_record
from qigbench.training.smollm2_llava import RECIPES, Heads, TrainConfig, recipe_name


def test_defaults_are_the_committed_weights_recipe() -> None:
    record = training_record()
    assert record["recipe"] == "v2"
    ours = asdict(TrainConfig())
    stored = record["config"]
    assert {k: ours[k] for k in stored if k != "kinds"} == {k: v for k, v in stored.items() if k != "kinds"}
    assert list(ours["kinds"]) == stored["kinds"]
    assert {k: ours[k] for k in RECIPES["v2"]} == RECIPES["v2"]


def test_v1_heads_have_no_per_patch_heads_and_v2_adds_them() -> None:
    kinds = ("colour", "shape")
    torch.manual_seed(0)
    v1 = Heads(8, 4, kinds)
    torch.manual_seed(0)
    v2 = Heads(8, 4, kinds, token_heads=True)
    assert v1.token_heads is None and v2.token_heads is not None
    # v1's parameters are v2's first ones, drawn identically (v2 only appends its heads)
    for a, b in zip(v1.parameters(), v2.parameters(), strict=False):
        assert torch.equal(a, b)
    assert len(list(v2.parameters())) == len(list(v1.parameters())) + 2 * len(kinds)
    features = torch.randn(3, 4, 8)
    flat, per_token = v1.logits(features, "shape")
    assert per_token is None and flat.shape == (3, 3)
    assert torch.equal(v1.predict(features, "shape"), flat.argmax(-1))


def test_the_record_names_the_recipe_its_config_follows() -> None:
    assert recipe_name(TrainConfig()) == "v2"
    assert recipe_name(TrainConfig(**RECIPES["v1"])) == "v1"
    assert recipe_name(TrainConfig(stage1_steps=123)) == "custom"
