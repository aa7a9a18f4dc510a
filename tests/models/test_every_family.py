"""Laws over *every registered family* (issue 11): no linear of a decoder block is left in full
precision by accident, no previous op that cannot absorb ``1/s`` is ever scaled, and the one group
resolver applies the same GQA rule to every family (issue 15).

Each family is exercised on a specimen: its tiny offline model, or for the remote-code InternLM2
family the InternLM2-shaped mock. A family added to the registry without a specimen fails
:func:`test_every_family_has_a_specimen`, so it cannot go untested.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import torch
from internlm2_mock import InternVLChatMock, internvl_chat_tree, mock_batches
from torch import nn

from qigbench.engine.method import get_method
from qigbench.engine.run import EngineConfig, calibrate
from qigbench.models.aliases import ALIASES, SourceKind
from qigbench.models.errors import ScalingGroupError
from qigbench.models.family import GroupKind, KeptLinear
from qigbench.models.groups import apply_scales_, block_linear_names, resolve_groups
from qigbench.models.registry import FAMILIES, family_for, get_blocks
from qigbench.models.scaling import prev_out_features
from qigbench.pipeline import QuantizeRequest, quantize
from qigbench.quant import QuantLinear, parse_format

TINY_BY_FAMILY = {a.family: a.name for a in ALIASES if a.kind is SourceKind.TINY}
MOCKS: dict[str, Callable[[], nn.Module]] = {"internlm2": internvl_chat_tree}
FAMILY_NAMES = [f.name for f in FAMILIES]
FAST = {"awq": {"n_grid": "4"}, "mbq": {"n_grid": "4"}, "qig": {"n_grid": "4", "qig.steps": "2"}}


def test_every_family_has_a_specimen() -> None:
    missing = [name for name in FAMILY_NAMES if name not in TINY_BY_FAMILY and name not in MOCKS]
    assert not missing, f"families without a tiny model or mock to test them on: {missing}"


def _quantize_specimen(family_name: str, method: str, fmt: str, cache_dir: Any) -> tuple[nn.Module, Any, Any]:
    options = FAST.get(method, {})
    if family_name in MOCKS:
        model = MOCKS[family_name]()
        family = family_for(model)
        report = calibrate(
            model, family, mock_batches(), get_method(method, options), parse_format(fmt), EngineConfig(progress=False)
        )
        return model, family, report
    request = QuantizeRequest(
        model=TINY_BY_FAMILY[family_name], method=method, format=fmt, options=tuple(options.items()),
        samples=2, max_length=48, cache_dir=str(cache_dir), progress=False,
    )  # fmt: skip
    result = quantize(request)
    return result.loaded.model, result.loaded.family, result.report


@pytest.mark.parametrize("family_name", FAMILY_NAMES)
@pytest.mark.parametrize("method", ["rtn", "gptq", "awq"])
def test_every_linear_of_every_block_is_quantized(family_name: str, method: str, tiny_cache: Any) -> None:
    """Quantized set == the block's linears minus the family's keep-list, for every method."""
    model, family, report = _quantize_specimen(family_name, method, "W4A16g16", tiny_cache)
    kept = {k.path for k in family.keep_fp}
    for i, block in enumerate(get_blocks(model, family)):
        linears = [n for n, m in block.named_modules() if isinstance(m, (nn.Linear, QuantLinear))]
        quantized = [n for n, m in block.named_modules() if isinstance(m, QuantLinear)]
        assert linears, f"{family_name}: block {i} has no linears"
        assert sorted(quantized) == sorted(n for n in linears if n not in kept), (family_name, method, i)
        assert report.blocks[i]["quantized"] == quantized


def test_internlm2_attention_output_is_quantized_by_every_scaling_method() -> None:
    """The finding: InternLM2's ``attention.wo`` is in no scalable group and used to stay fp."""
    for method in ("rtn", "gptq", "awq", "mbq", "qig", "qig-gptq"):
        model, family, report = _quantize_specimen("internlm2", method, "W3A16g16", None)
        for block in get_blocks(model, family):
            assert isinstance(block.get_submodule("attention.wo"), QuantLinear), method
        assert all("attention.wo" in b["quantized"] for b in report.blocks)


def test_mbq_reads_gradients_where_the_family_says() -> None:
    """MBQ's attention/MLP ratios come from the family's groups (InternLM2: wo and w2), not fixed paths."""
    _, family, report = _quantize_specimen("internlm2", "mbq", "W3A16g16", None)
    assert family.output_linear(GroupKind.ATTENTION) == "attention.wo"
    assert family.output_linear(GroupKind.MLP) == "feed_forward.w2"
    ratios = [b["groups"]["qkv"]["mbq_ratio"] for b in report.blocks]
    assert all(r > 0 and torch.isfinite(torch.tensor(r)) for r in ratios)


def test_a_linear_outside_every_group_is_quantized_on_its_own() -> None:
    """A family file that drops a group no longer leaves its linears fp: they get a group of their own."""
    model = internvl_chat_tree()
    family = family_for(model)
    trimmed = dataclasses.replace(family, groups=tuple(g for g in family.groups if g.name not in ("o", "down")))
    calibrate(model, trimmed, mock_batches(), get_method("awq", FAST["awq"]), parse_format("W4A16g16"),
            EngineConfig(progress=False))
    for block in get_blocks(model, trimmed):
        assert isinstance(block.get_submodule("attention.wo"), QuantLinear)
        assert isinstance(block.get_submodule("feed_forward.w2"), QuantLinear)


def test_keep_list_keeps_exactly_what_it_names() -> None:
    model = internvl_chat_tree()
    family = family_for(model)
    keep = (KeptLinear("feed_forward.w2", reason="test: a router-like layer kept in full precision"),)
    trimmed = dataclasses.replace(family, groups=tuple(g for g in family.groups if g.name != "down"), keep_fp=keep)
    calibrate(model, trimmed, mock_batches(), get_method("rtn"), parse_format("W4A16g16"), EngineConfig(progress=False))
    block = get_blocks(model, trimmed)[0]
    assert isinstance(block.get_submodule("feed_forward.w2"), nn.Linear)
    expected = ["attention.wqkv", "attention.wo", "feed_forward.w1", "feed_forward.w3"]
    assert block_linear_names(block, trimmed) == expected
    with pytest.raises(ScalingGroupError, match="keep_fp"):
        bad = dataclasses.replace(family, keep_fp=(KeptLinear("feed_forward.nope", reason="typo"),))
        block_linear_names(block, bad)


def _specimen_block(family_name: str, load_tiny: Any) -> tuple[nn.Module, Any, bool]:
    """Block 0 of the family's specimen, its family, and whether it has one value head per query head
    (InternLM2's fused ``wqkv`` never gives the "o" group a previous op of the right width)."""
    if family_name in MOCKS:
        model = MOCKS[family_name]()
        one_value_head_per_query_head = False
    else:
        model = load_tiny(TINY_BY_FAMILY[family_name]).model
        text = model.config.get_text_config()
        one_value_head_per_query_head = text.num_key_value_heads == text.num_attention_heads
    family = family_for(model)
    return copy.deepcopy(get_blocks(model, family)[0]), family, one_value_head_per_query_head


@pytest.mark.parametrize("family_name", FAMILY_NAMES)
def test_the_resolver_binds_every_linear_once_and_scales_o_only_without_gqa(family_name: str, load_tiny: Any) -> None:
    block, family, mha = _specimen_block(family_name, load_tiny)
    groups = resolve_groups(block, family)
    names = block_linear_names(block, family)
    assert sorted(n for g in groups for n in g.linear_names) == sorted(names)  # each linear in exactly one group
    firsts = [names.index(g.linear_names[0]) for g in groups]
    assert firsts == sorted(firsts)  # block order
    for g in groups:
        widths_agree = all(prev_out_features(g.prev_op) == lin.in_features for lin in g.linears)
        assert g.scalable == (g.spec.kind is not GroupKind.LINEAR and widths_agree), g.name
        assert g.scalable or g.spec.kind is GroupKind.LINEAR or g.spec.requires_matching_shapes, g.name
    by_name = {g.name: g for g in groups}
    assert by_name["o"].scalable == mha  # the GQA rule: o is scaled only with one value head per query head
    assert all(by_name[n].scalable for n in ("qkv", "gate_up", "down"))


@pytest.mark.parametrize("family_name", FAMILY_NAMES)
def test_under_gqa_o_stays_quantized_unscaled_and_another_mismatch_is_an_error(
    family_name: str, load_tiny: Any
) -> None:
    """Halving the value projection (GQA with half the key-value heads) turns off o's scaling only;
    the same mismatch on a group that must always match is a wrong family description."""
    block, family, _ = _specimen_block(family_name, load_tiny)
    specs = {g.name: g for g in family.groups}
    before = {g.name: g.scalable for g in resolve_groups(block, family)}
    v = block.get_submodule(specs["o"].prev_op)
    o_width = block.get_submodule(specs["o"].linears[0]).in_features
    block.get_submodule(specs["o"].prev_op.rpartition(".")[0]).register_module(  # v emits half of what o takes
        specs["o"].prev_op.rpartition(".")[2], nn.Linear(v.in_features, o_width // 2, bias=v.bias is not None)
    )
    after = {g.name: g for g in resolve_groups(block, family)}
    assert list(after) == list(before) and not after["o"].scalable
    assert {n: g.scalable for n, g in after.items() if n != "o"} == {n: s for n, s in before.items() if n != "o"}
    with pytest.raises(ScalingGroupError, match="grouped-query"):
        apply_scales_(block, specs["o"], torch.ones(after["o"].linears[0].in_features))

    up = block.get_submodule(specs["down"].prev_op)
    assert not specs["down"].requires_matching_shapes
    block.get_submodule(specs["down"].prev_op.rpartition(".")[0]).register_module(
        specs["down"].prev_op.rpartition(".")[2], nn.Linear(up.in_features, up.out_features // 2, bias=False)
    )
    with pytest.raises(ScalingGroupError, match="family description is wrong"):
        resolve_groups(block, family)


class GemmaRMSNorm(nn.Module):
    """Gemma's norm: ``x_hat * (1 + w)`` — dividing w by s does not divide the output by s."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * (1.0 + self.weight)


@pytest.mark.parametrize("method", ["awq", "smoothquant"])
def test_a_norm_that_cannot_absorb_the_scale_is_rejected_before_any_search(method: str) -> None:
    model = internvl_chat_tree()
    assert isinstance(model, InternVLChatMock)
    family = family_for(model)
    for block in get_blocks(model, family):
        block.attention_norm = GemmaRMSNorm(block.attention_norm.weight.numel())
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ScalingGroupError, match=r"GemmaRMSNorm.*1 \+ w"):
        calibrate(model, family, mock_batches(), get_method(method), parse_format("W4A8"), EngineConfig(progress=False))
    block0 = get_blocks(model, family)[0]
    assert not isinstance(block0.get_submodule("attention.wqkv"), QuantLinear)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items() if k in before)
