"""MBQ's modality gradients and TLQ's per-token gradients (:mod:`qigbench.bases.output_gradients`)
against a direct autograd computation on tiny-qwen2vl: the outputs of the chosen modules are kept
from the forward pass and ``torch.autograd.grad`` of the caption loss is taken with respect to
them, no backward hooks involved."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from qigbench.bases.output_gradients import modality_gradients, token_gradients
from qigbench.engine.collate import unify_lengths
from qigbench.models.family import GroupKind
from qigbench.tokens import TokenType


def _direct(model: nn.Module, blocks: nn.ModuleList, batch: Any, names: list[str]) -> dict[tuple[int, str], Any]:
    """dL/dY per (block, module) for one batch, Y the module's output ("": the block's)."""
    outputs: dict[tuple[int, str], torch.Tensor] = {}
    handles = []
    for i, block in enumerate(blocks):
        for name in names:
            module = block.get_submodule(name) if name else block

            def keep(m: nn.Module, args: Any, out: Any, key: tuple[int, str] = (i, name)) -> None:
                outputs[key] = out[0] if isinstance(out, (tuple, list)) else out

            handles.append(module.register_forward_hook(keep))
    try:
        with torch.enable_grad():
            loss = model(**batch.inputs, labels=batch.labels, use_cache=False).loss
            keys = list(outputs)
            grads = torch.autograd.grad(loss, [outputs[k] for k in keys])
    finally:
        for h in handles:
            h.remove()
    return {k: g.detach().float() for k, g in zip(keys, grads, strict=True)}


def _setup(qwen):  # type: ignore[no-untyped-def]
    loaded, batches = qwen
    family, model = loaded.family, loaded.model
    blocks = model.get_submodule(family.blocks)
    embed = model.get_submodule(family.embed_tokens)
    names = [family.output_linear(GroupKind.ATTENTION), family.output_linear(GroupKind.MLP)]
    return model, blocks, embed, batches, names


def test_modality_gradients_are_the_mean_abs_output_gradient_per_modality(qwen) -> None:  # type: ignore[no-untyped-def]
    model, blocks, embed, batches, names = _setup(qwen)
    got = modality_gradients(model, blocks, embed, batches, names, "cpu")
    direct = [_direct(model, blocks, b, names) for b in batches]
    vision = sum(float((b.token_types == TokenType.VISION).sum()) for b in batches)
    answer = sum(float(b.answer_mask.sum()) for b in batches)
    assert vision > 0 and answer > 0
    for name in names:
        for i in range(len(blocks)):
            g = [d[(i, name)].abs().mean(dim=-1) for d in direct]  # [B, T] per batch
            pairs = list(zip(g, batches, strict=True))
            want_v = sum(float((x * (b.token_types == TokenType.VISION)).sum()) for x, b in pairs)
            want_t = sum(float((x * b.answer_mask).sum()) for x, b in pairs)
            assert got.vision[name][i].item() == pytest.approx(want_v / vision, rel=1e-4)
            assert got.text[name][i].item() == pytest.approx(want_t / answer, rel=1e-4)
            assert got.text[name][i] > 0
            # a vision position reaches the (answer) loss only through later blocks' attention:
            # in the last block its outputs get no gradient at all
            assert (got.vision[name][i] == 0) if i == len(blocks) - 1 else (got.vision[name][i] > 0)
    # every hook is gone and no parameter keeps a gradient
    assert all(not m._backward_hooks and not m._forward_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("statistic", ["abs", "fisher"])
def test_token_gradients_are_the_per_token_output_gradient(qwen, statistic: str) -> None:  # type: ignore[no-untyped-def]
    model, blocks, embed, batches, names = _setup(qwen)
    names = ["", names[1]]  # the block output and the MLP's down projection
    batches = unify_lengths(batches)  # as the engine hands them to prepare(): one length, concatenable
    got = token_gradients(model, blocks, embed, batches, names, "cpu", statistic)
    direct = [_direct(model, blocks, b, names) for b in batches]
    for i in range(len(blocks)):
        for name in names:
            per_batch = [d[(i, name)] for d in direct]
            want = torch.cat([g.abs().mean(-1) if statistic == "abs" else g.pow(2).mean(-1) for g in per_batch])
            assert got[i][name].shape == want.shape == (sum(b.token_types.shape[0] for b in batches), want.shape[1])
            torch.testing.assert_close(got[i][name], want, rtol=1e-4, atol=1e-12)
    assert all(not m._forward_hooks for m in model.modules())
