"""capture_block_inputs: one pass records block 0's input and every block's call, and restores the blocks."""

from __future__ import annotations

import torch

from qigbench.engine.capture import capture_block_inputs, place_outside_blocks
from qigbench.models.registry import get_blocks


def test_capture_records_block_zero_input_and_every_call(llama) -> None:  # type: ignore[no-untyped-def]
    model, family, batches = llama
    blocks = get_blocks(model, family)
    originals = list(blocks)
    captured = capture_block_inputs(model, blocks, [b.inputs for b in batches], device="cpu", offload="cpu")
    assert list(blocks) == originals  # the pass-throughs are gone again
    assert len(captured.hidden) == len(batches) and len(captured.layer_calls) == len(blocks)
    assert all(len(calls) == len(batches) for calls in captured.layer_calls)

    # block 0's recorded input is the real one: run the real forward with a hook and compare
    seen: list[torch.Tensor] = []
    handle = blocks[0].register_forward_pre_hook(
        lambda m, args, kwargs: seen.append((kwargs.get("hidden_states", args[0] if args else None)).clone()),
        with_kwargs=True,
    )
    try:
        with torch.no_grad():
            for b in batches:
                model(**b.inputs, use_cache=False)
    finally:
        handle.remove()
    for got, want in zip(captured.hidden, seen, strict=True):
        assert torch.equal(got, want)


def test_place_outside_blocks_leaves_the_blocks_alone(llama) -> None:  # type: ignore[no-untyped-def]
    model, family, _ = llama
    place_outside_blocks(model, family.blocks, "meta")
    assert model.get_submodule(family.embed_tokens).weight.device.type == "meta"
    assert all(p.device.type == "cpu" for p in get_blocks(model, family).parameters())
