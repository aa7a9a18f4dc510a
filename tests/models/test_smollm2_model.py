"""SmolLM2-135M (real weights, Llama architecture) through the same loading and family path.

Marked slow: the first run converts the packaged GGUF (about a minute on 2 cores).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

from qigbench.models import apply_scales_, classify_tokens, get_blocks, load_model, resolve_groups
from qigbench.tokens import TokenType

pytestmark = [pytest.mark.slow, pytest.mark.smollm2]


def test_smollm2_loads_resolves_and_keeps_scaling_invariance(tiny_cache: Path) -> None:
    loaded = load_model("smollm2-135m", cache_dir=tiny_cache)
    assert loaded.family.name == "llama" and loaded.source.startswith("smollm2-135m -> package:")
    tok = loaded.tokenizer
    chat = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], tokenize=False, add_generation_prompt=True
    )
    batch = tok([chat, "Hi"], return_tensors="pt", padding=True, add_special_tokens=False)
    types = classify_tokens(
        batch["input_ids"], batch["attention_mask"], config=loaded.model.config, tokenizer=tok, family=loaded.family
    )
    im_start = batch["input_ids"] == tok.convert_tokens_to_ids("<|im_start|>")
    assert im_start.any() and bool((types[im_start] == TokenType.SPECIAL).all())
    assert torch.equal(types == TokenType.PAD, batch["attention_mask"] == 0)

    captured: dict[str, Any] = {}
    block = get_blocks(loaded.model, loaded.family)[3]

    def hook(module, args, kwargs):  # type: ignore[no-untyped-def]
        captured.update(args=args, kwargs=dict(kwargs))

    handle = block.register_forward_pre_hook(hook, with_kwargs=True)
    with torch.no_grad():
        loaded.model(**batch, use_cache=False)
    handle.remove()
    # 9 query heads share 3 key-value heads: GQA, so there is no "o" group
    groups = [g for g in resolve_groups(block, loaded.family) if g.scalable]
    assert [g.name for g in groups] == ["qkv", "gate_up", "down"]
    args, kwargs = captured["args"], captured["kwargs"]
    with torch.no_grad():
        reference = block(*args, **kwargs)
        gen = torch.Generator().manual_seed(0)
        for group in groups:
            scaled = copy.deepcopy(block)
            width = group.linears[0].in_features
            apply_scales_(scaled, group.spec, torch.exp(torch.randn(width, generator=gen) * 0.5))
            torch.testing.assert_close(scaled(*args, **kwargs), reference, rtol=1e-3, atol=1e-4)
