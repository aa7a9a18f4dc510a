"""Law: scaling a group's linears by s and its previous op by 1/s leaves the fp block output unchanged.

Run on every tiny family with the block's real inputs (hidden states, attention mask, rotary
position embeddings) captured from a full forward pass with an image and a prompt. A wrong
group description (wrong previous op, a linear missing from the group, a wrong slice of a fused
linear) breaks the law. Slices are covered on every group that has one (the v rows of Phi-3's
``qkv_proj`` for "o", the up half of ``gate_up_proj`` for "down"), and the strided v rows of
InternLM2's ``wqkv`` on an InternLM2-shaped block with one value head per query head.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qigbench.models import ResolvedGroup, apply_scales_, family_for, get_blocks, resolve_groups
from qigbench.models.aliases import ALIAS_BY_NAME, ALIASES, SourceKind
from qigbench.models.errors import ScalingGroupError
from qigbench.models.scaling import rows_index

TINY_ALIASES = tuple(a.name for a in ALIASES if a.kind is SourceKind.TINY)  # every tiny family, from the registry
_CAPTURED: dict[str, list[tuple[torch.nn.Module, tuple[Any, ...], dict[str, Any]]]] = {}


def captured_blocks(loaded, batch) -> list[tuple[torch.nn.Module, tuple[Any, ...], dict[str, Any]]]:  # type: ignore[no-untyped-def]
    """Each decoder block with the exact (args, kwargs) it received in a full forward pass."""
    calls: list[tuple[torch.nn.Module, tuple[Any, ...], dict[str, Any]]] = []
    handles = []
    for block in get_blocks(loaded.model, loaded.family):

        def hook(module, args, kwargs, block=block):  # type: ignore[no-untyped-def]
            calls.append((block, tuple(a.detach().clone() for a in args), dict(kwargs)))

        handles.append(block.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        with torch.no_grad():
            loaded.model(**batch, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return calls


def _run(block: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    with torch.no_grad():
        out = block(*args, **kwargs)
    return out[0] if isinstance(out, tuple) else out


@pytest.fixture(scope="module")
def block_inputs(load_tiny, prompt_batch):  # type: ignore[no-untyped-def]
    def get(alias: str):  # type: ignore[no-untyped-def]
        if alias not in _CAPTURED:
            loaded = load_tiny(alias)
            batch = prompt_batch(loaded, ["Describe the image in detail.", "What is shown?"])
            _CAPTURED[alias] = captured_blocks(loaded, batch)
        return load_tiny(alias).family, _CAPTURED[alias]

    return get


@pytest.mark.parametrize("alias", TINY_ALIASES)
@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_scaling_a_group_keeps_the_block_output(block_inputs, alias: str, data: st.DataObject) -> None:
    family, calls = block_inputs(alias)
    block_index = data.draw(st.integers(0, len(calls) - 1), label="block")
    block, args, kwargs = calls[block_index]
    groups = [g for g in resolve_groups(block, family) if g.scalable]
    group = data.draw(st.sampled_from(groups), label="group")
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    log_range = data.draw(st.floats(0.01, 2.0), label="log_range")
    width = group.linears[0].in_features
    gen = torch.Generator().manual_seed(seed)
    scales = torch.exp((torch.rand(width, generator=gen) * 2 - 1) * log_range)

    _check_invariance(block, args, kwargs, family, group, scales)


def _check_invariance(block, args, kwargs, family, group: ResolvedGroup, scales: torch.Tensor) -> None:  # type: ignore[no-untyped-def]
    reference = _run(block, args, kwargs)
    scaled = copy.deepcopy(block)
    apply_scales_(scaled, group, scales)
    changed = _group(scaled, family, group.name).linears[0].weight
    assert not torch.allclose(changed, group.linears[0].weight)
    if group.prev_rows is not None:  # only the slice's rows of the fused previous op moved
        moved = (scaled.get_submodule(group.spec.prev_op).weight != group.prev_op.weight).any(dim=1)
        assert torch.equal(moved.nonzero().flatten(), rows_index(group.prev_rows))
    torch.testing.assert_close(_run(scaled, args, kwargs), reference, rtol=1e-4, atol=1e-5)


SLICED = [(alias, name) for alias, name in (
    ("tiny-phi3", "o"), ("tiny-phi3", "down"), ("tiny-phi4mm", "down"),
) if alias in TINY_ALIASES]  # fmt: skip


@pytest.mark.parametrize(("alias", "name"), SLICED)
@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), log_range=st.floats(0.01, 2.0))
def test_scaling_through_a_slice_of_a_fused_linear_keeps_the_block_output(
    block_inputs, alias: str, name: str, seed: int, log_range: float
) -> None:
    family, calls = block_inputs(alias)
    for block, args, kwargs in calls:
        group = _group(block, family, name)
        assert group.scalable and group.prev_rows is not None
        gen = torch.Generator().manual_seed(seed)
        scales = torch.exp((torch.rand(group.linears[0].in_features, generator=gen) * 2 - 1) * log_range)
        _check_invariance(block, args, kwargs, family, group, scales)


def test_every_slice_a_family_scales_is_covered() -> None:
    """A new fused family's sliced groups join SLICED (they are the ones a wrong layout breaks)."""
    from qigbench.models.registry import family_named

    sliced = set()
    for alias in TINY_ALIASES:
        family = family_named(ALIAS_BY_NAME[alias].family)
        sliced |= {(alias, g.name) for g in family.groups if g.prev_part}
    phi4_o = ("tiny-phi4mm", "o")  # GQA: v's slice is narrower than o's input, never scaled
    assert sliced - {phi4_o} == set(SLICED)


@settings(max_examples=10, deadline=None)
@given(group_name=st.sampled_from(["qkv", "o", "gate_up", "down"]), seed=st.integers(0, 2**31 - 1))
def test_scaling_through_interleaved_internlm2_v_rows_keeps_the_block_output(group_name: str, seed: int) -> None:
    """With one value head per query head InternLM2's "o" group is scaled through the v rows of
    ``wqkv``, one run per key-value group: a wrong stride or offset changes the output."""
    from internlm2_mock import HEADS, HIDDEN, internvl_chat_tree

    model = internvl_chat_tree(kv_heads=HEADS)
    family = family_for(model)
    block = get_blocks(model, family)[0]
    group = _group(block, family, group_name)
    assert group.scalable
    if group_name == "o":
        assert group.prev_rows is not None and len(group.prev_rows) == HEADS  # one run per key-value group
    gen = torch.Generator().manual_seed(seed)
    scales = torch.exp(torch.randn(group.linears[0].in_features, generator=gen))
    x = torch.randn(2, 5, HIDDEN, generator=gen)
    _check_invariance(block, (x,), {}, family, group, scales)


def test_wrong_scales_do_change_the_output(block_inputs) -> None:
    """Control: scaling only the linears (not the previous op) must change the output."""
    family, calls = block_inputs("tiny-llama")
    block, args, kwargs = calls[0]
    scaled = copy.deepcopy(block)
    for lin in _group(scaled, family, "qkv").linears:
        lin.weight.data *= 2.0
    assert not torch.allclose(_run(scaled, args, kwargs), _run(block, args, kwargs), atol=1e-4)


def test_layernorm_prev_op_scales_weight_and_bias() -> None:
    from qigbench.models.family import GroupKind, ScalingGroup

    norm = torch.nn.LayerNorm(8)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    block = torch.nn.Sequential()
    block.add_module("norm", norm)
    block.add_module("fc", torch.nn.Linear(8, 3))
    group = ScalingGroup("g", prev_op="norm", linears=("fc",), inspect="fc", kind=GroupKind.MLP)
    x = torch.randn(5, 8)
    before = block(x)
    apply_scales_(block, group, torch.linspace(0.3, 3.0, 8))
    torch.testing.assert_close(block(x), before, rtol=1e-5, atol=1e-5)


def test_bad_scales_are_rejected(block_inputs) -> None:
    family, calls = block_inputs("tiny-qwen2.5vl")
    block = calls[0][0]
    by_name = {g.name: g for g in family.groups}
    with pytest.raises(ScalingGroupError, match="grouped-query"):
        apply_scales_(block, by_name["o"], torch.ones(128))  # GQA: v_proj emits 32, o_proj takes 128
    with pytest.raises(ScalingGroupError, match="entries"):
        apply_scales_(block, by_name["qkv"], torch.ones(127))
    with pytest.raises(ScalingGroupError, match="> 0"):
        apply_scales_(block, by_name["qkv"], -torch.ones(128))


def _group(block: torch.nn.Module, family: Any, name: str) -> ResolvedGroup:
    return {g.name: g for g in resolve_groups(block, family)}[name]
