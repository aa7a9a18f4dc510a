"""Every tiny family loads offline through from_pretrained, trains, and is described correctly."""

from __future__ import annotations

import pytest
import torch

from qigbench.models import classify_tokens, family_for, get_blocks, resolve_groups
from qigbench.models.aliases import ALIAS_BY_NAME, ALIASES, SourceKind
from qigbench.models.registry import family_named
from qigbench.models.token_types import vision_token_ids
from qigbench.tokens import TokenType

TINY_ALIASES = tuple(a.name for a in ALIASES if a.kind is SourceKind.TINY)  # every tiny family, from the registry
VLM_ALIASES = tuple(a for a in TINY_ALIASES if family_named(ALIAS_BY_NAME[a].family).multimodal)

# (alias) -> whether the "o" group is scaled (one value head per query head) or not (GQA)
HAS_O_GROUP = {
    "tiny-qwen2vl": True,
    "tiny-qwen2.5vl": False,
    "tiny-llava-ov": False,
    "tiny-internvl": True,
    "tiny-llava": True,
    "tiny-llama": True,
    "tiny-phi3": True,
    "tiny-phi4mm": False,
}


#: the chat-template markers of the specimens whose template is not ChatML
CHAT_MARKERS = {"tiny-phi3": ["<|user|>", "<|end|>", "<s>"], "tiny-phi4mm": ["<|user|>", "<|end|>", "<|assistant|>"]}


@pytest.mark.parametrize("alias", TINY_ALIASES)
def test_forward_and_backward_with_image_and_prompt(load_tiny, prompt_batch, alias: str) -> None:
    loaded = load_tiny(alias)
    assert family_for(loaded.model) is loaded.family
    batch = prompt_batch(loaded, ["Describe the image in detail."])
    out = loaded.model(**batch, labels=batch["input_ids"])
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in get_blocks(loaded.model, loaded.family).parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    loaded.model.zero_grad(set_to_none=True)
    if alias in VLM_ALIASES:  # the image actually reached the decoder: its placeholders are in the prompt
        assert (
            classify_tokens(
                batch["input_ids"],
                batch["attention_mask"],
                config=loaded.model.config,
                tokenizer=loaded.tokenizer,
                family=loaded.family,
            )
            == TokenType.VISION
        ).any()


@pytest.mark.parametrize("alias", TINY_ALIASES)
def test_blocks_and_groups_resolve_to_real_modules(load_tiny, alias: str) -> None:
    loaded = load_tiny(alias)
    family = loaded.family
    blocks = get_blocks(loaded.model, family)
    assert len(blocks) == loaded.model.config.get_text_config().num_hidden_layers
    for path in (family.embed_tokens, *family.vision):
        loaded.model.get_submodule(path)
    hidden, inter = 128, 256
    for block in blocks:
        by_name = {g.name: g for g in resolve_groups(block, family)}
        assert list(by_name) == ["qkv", "o", "gate_up", "down"]  # o exists under GQA too: o_proj is quantized
        scalable = [name for name, g in by_name.items() if g.scalable]
        assert scalable == (["qkv", "o", "gate_up", "down"] if HAS_O_GROUP[alias] else ["qkv", "gate_up", "down"])
        qkv = by_name["qkv"]
        assert qkv.prev_op.weight.shape == (hidden,)
        assert {lin.in_features for lin in qkv.linears} == {hidden}
        gate_up = by_name["gate_up"]
        assert sum(lin.out_features for lin in gate_up.linears) == 2 * inter  # gate and up (or gate_up fused)
        assert {lin.in_features for lin in gate_up.linears} == {hidden}
        down = by_name["down"]
        assert down.prev_op is block.get_submodule(down.spec.prev_op) and down.inspect is down.linears[0]
        assert down.prev_width == inter and down.linears[0].weight.shape == (hidden, inter)
        o = by_name["o"]
        assert (o.prev_width == o.linears[0].in_features) == HAS_O_GROUP[alias]


@pytest.mark.parametrize("alias", TINY_ALIASES)
def test_token_classification_on_padded_batch(load_tiny, prompt_batch, alias: str) -> None:
    loaded = load_tiny(alias)
    texts = ["Describe the image in detail.", "What is shown?"]
    batch = prompt_batch(loaded, texts)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert (mask == 0).any(), "the two prompts must pad to different lengths"
    types = classify_tokens(
        ids,
        mask,
        config=loaded.model.config,
        tokenizer=loaded.tokenizer,
        family=loaded.family,
        mm_token_type_ids=batch.get("mm_token_type_ids"),
    )
    assert types.shape == ids.shape and types.dtype == torch.long
    assert torch.equal(types == TokenType.PAD, mask == 0)

    vision_ids = vision_token_ids(loaded.model.config, loaded.tokenizer, loaded.family)
    placeholder = torch.isin(ids, torch.tensor(sorted(vision_ids), dtype=ids.dtype)) & (mask == 1)
    assert torch.equal(types == TokenType.VISION, placeholder)
    if alias in VLM_ALIASES:
        # exactly the placeholders the processor expanded for each image (depends on image size, not on text)
        per_row = placeholder.sum(dim=1)
        assert per_row.min() > 0 and bool((per_row == per_row[0]).all())
        config = loaded.model.config
        image_token = next(  # Phi-4-multimodal keeps it in its vision config
            v for v in (getattr(config, "image_token_id", None), getattr(config, "image_token_index", None),
                        getattr(getattr(config, "vision_config", None), "image_token_id", None)) if v is not None
        )
        assert int((ids == image_token).sum()) == int((types == TokenType.VISION).sum())
    else:
        assert not placeholder.any()

    # chat-template markers are special even though all_special_ids misses some of them
    markers = CHAT_MARKERS.get(alias, ["<|im_start|>", "<|im_end|>"] if alias in VLM_ALIASES else ["<s>"])
    for marker in markers:
        marker_id = loaded.tokenizer.convert_tokens_to_ids(marker)
        at = (ids == marker_id) & (mask == 1)
        assert at.any() and bool((types[at] == TokenType.SPECIAL).all())
    if alias in VLM_ALIASES:
        assert loaded.tokenizer.convert_tokens_to_ids(markers[0]) not in loaded.tokenizer.all_special_ids
    # the words of the prompt are text
    assert (types == TokenType.TEXT).sum(dim=1).min() >= 3


def test_mm_token_type_ids_mark_vision(load_tiny, prompt_batch) -> None:
    loaded = load_tiny("tiny-qwen2vl")
    batch = prompt_batch(loaded, ["Describe the image."])
    assert "mm_token_type_ids" in batch

    # with no vision ids in the config, the processor's mm_token_type_ids alone still find the image
    class NoIds:
        image_token_id = None
        video_token_id = None

    types = classify_tokens(
        batch["input_ids"],
        batch["attention_mask"],
        config=NoIds(),
        tokenizer=loaded.tokenizer,
        family=loaded.family,
        mm_token_type_ids=batch["mm_token_type_ids"],
    )
    expected = batch["input_ids"] == loaded.model.config.image_token_id
    assert torch.equal(types == TokenType.VISION, expected)
