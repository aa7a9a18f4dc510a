"""The InternLM2 (InternVL2, remote code) description matches an InternLM2-shaped module tree
(:mod:`tests.models.internlm2_mock`): paths, shapes, scaling groups, token classification."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from internlm2_mock import HEAD_DIM, HEADS, HIDDEN, KV_HEADS, internvl_chat_tree

from qigbench.models import apply_scales_, family_for, get_blocks, resolve_groups
from qigbench.models.token_types import classify_tokens
from qigbench.tokens import TokenType


def test_paths_and_shapes_resolve() -> None:
    model = internvl_chat_tree()
    family = family_for(model)
    assert family.name == "internlm2" and family.auto_class == "AutoModel"
    for path in (family.embed_tokens, *family.vision):
        model.get_submodule(path)
    blocks = get_blocks(model, family)
    assert len(blocks) == 2
    for block in blocks:
        by_name = {g.name: g for g in resolve_groups(block, family)}
        assert list(by_name) == ["qkv", "o", "gate_up", "down"]  # wo is in a group (quantized) ...
        assert [g.name for g in by_name.values() if g.scalable] == ["qkv", "gate_up", "down"]  # ... never scaled
        qkv = by_name["qkv"]
        assert qkv.linears[0].weight.shape == ((HEADS + 2 * KV_HEADS) * HEAD_DIM, HIDDEN)
        down = by_name["down"]
        ffn = block.get_submodule("feed_forward")
        assert down.prev_op is ffn.w3 and down.linears == [ffn.w2]


@settings(max_examples=15, deadline=None)
@given(group_index=st.integers(0, 2), seed=st.integers(0, 2**31 - 1))
def test_scaling_invariance_on_internlm2_block(group_index: int, seed: int) -> None:
    model = internvl_chat_tree()
    family = family_for(model)
    block = get_blocks(model, family)[0]
    group = [g for g in resolve_groups(block, family) if g.scalable][group_index]
    gen = torch.Generator().manual_seed(seed)
    width = group.linears[0].in_features
    scales = torch.exp(torch.randn(width, generator=gen))
    x = torch.randn(2, 5, HIDDEN, generator=gen)
    with torch.no_grad():
        before = block(x)
        scaled = copy.deepcopy(block)
        apply_scales_(scaled, group.spec, scales)
        torch.testing.assert_close(scaled(x), before, rtol=1e-4, atol=1e-5)


def test_image_context_token_is_vision_without_a_config_key() -> None:
    """InternVL2 keeps <IMG_CONTEXT> out of its config: the family names the token string instead."""
    family = family_for(internvl_chat_tree())
    vocab = {"<s>": 1, "<img>": 5, "<IMG_CONTEXT>": 6, "</img>": 7}
    tokenizer = SimpleNamespace(
        all_special_ids=[1],
        added_tokens_decoder={i: SimpleNamespace(special=True) for i in (5, 6, 7)},
        unk_token_id=0,
        convert_tokens_to_ids=lambda t: vocab.get(t, 0),
    )
    ids = torch.tensor([[1, 9, 5, 6, 6, 7, 9, 2]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 0]])
    types = classify_tokens(ids, mask, config=SimpleNamespace(), tokenizer=tokenizer, family=family)
    T = TokenType
    assert types.tolist() == [[T.SPECIAL, T.TEXT, T.SPECIAL, T.VISION, T.VISION, T.SPECIAL, T.TEXT, T.PAD]]


def test_internvl_chat_with_another_language_model_is_refused() -> None:
    from qigbench.models.errors import UnknownFamilyError

    assert family_for(SimpleNamespace(model_type="internvl_chat", llm_config={"model_type": "internlm2"})).name == (
        "internlm2"
    )
    with pytest.raises(UnknownFamilyError, match="'qwen2'"):
        family_for(SimpleNamespace(model_type="internvl_chat", llm_config=SimpleNamespace(model_type="qwen2")))


@pytest.mark.parametrize("name", ["qkv", "o", "gate_up", "down"])
def test_groups_are_named_like_llama_style(name: str) -> None:
    """Methods look groups up by name (MBQ's attention/MLP ratio): InternLM2 uses the same names."""
    family = family_for(internvl_chat_tree())
    assert name in {g.name for g in family.groups}
