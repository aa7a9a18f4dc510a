"""Laws over *every registered family* (issue 11): no linear of a decoder block is left in full
precision by accident, no previous op that cannot absorb ``1/s`` is ever scaled, and the one group
resolver applies the same GQA rule to every family (issue 15). Issue 20: the groups run in
data-flow order (the block's recorded forward order), "o" and "down" are scaled wherever the shapes
allow (through a slice of a fused linear too), and the clip search leaves exactly the rows the
family names unclipped.

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
from qigbench.models.scaling import rows_index, rows_width
from qigbench.models.tiny import TINY_SPECIMENS
from qigbench.pipeline import QuantizeRequest, quantize
from qigbench.quant import QuantLinear, parse_format

TINY_BY_FAMILY = {a.family: a.name for a in ALIASES if a.kind is SourceKind.TINY}
MOCKS: dict[str, Callable[[], nn.Module]] = {"internlm2": internvl_chat_tree}
FAMILY_NAMES = [f.name for f in FAMILIES]
FAST = {"awq": {"n_grid": "4"}, "mbq": {"n_grid": "4"}, "qig": {"n_grid": "4", "qig.steps": "2"}}


def test_every_family_has_a_specimen() -> None:
    missing = [name for name in FAMILY_NAMES if name not in TINY_BY_FAMILY and name not in MOCKS]
    assert not missing, f"families without a tiny model or mock to test them on: {missing}"


def _quantize_specimen(
    family_name: str, method: str, fmt: str, cache_dir: Any, extra: dict[str, str] | None = None
) -> tuple[nn.Module, Any, Any]:
    options = {**FAST.get(method, {}), **(extra or {})}
    if family_name in MOCKS:
        model = MOCKS[family_name]()
        family = family_for(model)
        report = calibrate(
            model, family, mock_batches(), get_method(method, options), parse_format(fmt), EngineConfig(progress=False)
        )
        return model, family, report
    alias = TINY_BY_FAMILY[family_name]
    request = QuantizeRequest(
        model=alias, method=method, format=fmt, options=tuple(options.items()),
        samples=2, max_length=48 + TINY_SPECIMENS[alias].min_length, cache_dir=str(cache_dir), progress=False,
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


def _specimen(family_name: str, load_tiny: Any) -> tuple[nn.Module, Any, bool]:
    """The family's specimen model, its (bound) family, and whether it has one value head per
    query head (the mock InternLM2 uses GQA, as every InternLM2 checkpoint does)."""
    if family_name in MOCKS:
        model = MOCKS[family_name]()
        one_value_head_per_query_head = False
    else:
        model = load_tiny(TINY_BY_FAMILY[family_name]).model
        text = model.config.get_text_config()
        one_value_head_per_query_head = text.num_key_value_heads == text.num_attention_heads
    return model, family_for(model), one_value_head_per_query_head


def _specimen_block(family_name: str, load_tiny: Any) -> tuple[nn.Module, Any, bool]:
    """Block 0 of the family's specimen (a copy), its family, and whether it has one value head per query head."""
    model, family, mha = _specimen(family_name, load_tiny)
    return copy.deepcopy(get_blocks(model, family)[0]), family, mha


def _forward_order(family_name: str, load_tiny: Any, prompt_batch: Any) -> list[str]:
    """The linears of block 0 in the order a real forward pass first calls them."""
    model, family, _ = _specimen(family_name, load_tiny)
    block = get_blocks(model, family)[0]
    order: list[str] = []
    handles = [
        m.register_forward_pre_hook(lambda *_, name=name: order.append(name) if name not in order else None)
        for name, m in block.named_modules()
        if isinstance(m, (nn.Linear, QuantLinear))
    ]
    try:
        with torch.no_grad():
            if family_name in MOCKS:
                model(**mock_batches(1)[0].inputs)
            else:
                loaded = load_tiny(TINY_BY_FAMILY[family_name])
                model(**prompt_batch(loaded, ["Describe the image in detail."]), use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return order


@pytest.mark.parametrize("family_name", FAMILY_NAMES)
def test_groups_and_linears_come_in_data_flow_order(family_name: str, load_tiny: Any, prompt_batch: Any) -> None:
    """The order methods run groups in (GPTQ's true-sequential pass, TLQ's exposure, Q-VLM's chain)
    is the order the block computes them, not the order its modules are defined in (Phi-3 defines
    o_proj before qkv_proj)."""
    forward = _forward_order(family_name, load_tiny, prompt_batch)
    block, family, _ = _specimen_block(family_name, load_tiny)
    assert block_linear_names(block, family) == forward
    firsts = [forward.index(g.linear_names[0]) for g in resolve_groups(block, family)]
    assert firsts == sorted(firsts)
    assert [g.name for g in resolve_groups(block, family)] == [g.name for g in family.groups]  # the table is data flow


@pytest.mark.parametrize("family_name", FAMILY_NAMES)
def test_the_resolver_binds_every_linear_once_and_scales_o_only_without_gqa(family_name: str, load_tiny: Any) -> None:
    block, family, mha = _specimen_block(family_name, load_tiny)
    groups = resolve_groups(block, family)
    names = block_linear_names(block, family)
    assert sorted(n for g in groups for n in g.linear_names) == sorted(names)  # each linear in exactly one group
    assert sorted(names) == sorted(n for n, m in block.named_modules() if isinstance(m, nn.Linear))
    for g in groups:
        widths_agree = all(g.prev_width == lin.in_features for lin in g.linears)
        assert g.scalable == (g.spec.kind is not GroupKind.LINEAR and widths_agree), g.name
        assert g.scalable or g.spec.kind is GroupKind.LINEAR or g.spec.requires_matching_shapes, g.name
        assert (g.prev_rows is not None) == bool(g.spec.prev_part), g.name
    by_name = {g.name: g for g in groups}
    assert by_name["o"].scalable == mha  # the GQA rule: o is scaled only with one value head per query head
    assert all(by_name[n].scalable for n in ("qkv", "gate_up", "down"))


def _with_half_the_value_heads(block: nn.Module, family: Any) -> Any:
    """Rebuild the "o" group's previous op as it is under GQA with half the key-value heads: a v_proj
    of half the rows, or a fused qkv linear with half the k and v rows (and the family bound to a
    config with half the key-value heads). Returns the family to resolve with."""
    spec = {g.name: g for g in family.groups}["o"]
    prev = block.get_submodule(spec.prev_op)
    o_width = block.get_submodule(spec.linears[0]).in_features
    parent, _, leaf = spec.prev_op.rpartition(".")
    bias = prev.bias is not None
    if not spec.prev_part:
        block.get_submodule(parent).register_module(leaf, nn.Linear(prev.in_features, o_width // 2, bias=bias))
        return family
    v_rows = rows_width(family.part_rows(spec.prev_op, spec.prev_part, prev.out_features))
    block.get_submodule(parent).register_module(
        leaf, nn.Linear(prev.in_features, prev.out_features - v_rows, bias=bias)
    )
    dims = tuple((k, v // 2 if k == "num_key_value_heads" else v) for k, v in family.dims)
    return dataclasses.replace(family, dims=dims)


@pytest.mark.parametrize("family_name", FAMILY_NAMES)
def test_under_gqa_o_stays_quantized_unscaled_and_another_mismatch_is_an_error(
    family_name: str, load_tiny: Any
) -> None:
    """Halving the value projection (GQA with half the key-value heads) turns off o's scaling only;
    the same mismatch on a group that must always match is a wrong family description."""
    block, family, _ = _specimen_block(family_name, load_tiny)
    specs = {g.name: g for g in family.groups}
    before = {g.name: g.scalable for g in resolve_groups(block, family)}
    gqa = _with_half_the_value_heads(block, family)
    after = {g.name: g for g in resolve_groups(block, gqa)}
    assert list(after) == list(before) and not after["o"].scalable
    assert {n: g.scalable for n, g in after.items() if n != "o"} == {n: s for n, s in before.items() if n != "o"}
    with pytest.raises(ScalingGroupError, match="grouped-query"):
        apply_scales_(block, after["o"], torch.ones(after["o"].linears[0].in_features))

    up = block.get_submodule(specs["down"].prev_op)
    assert not specs["down"].requires_matching_shapes
    block.get_submodule(specs["down"].prev_op.rpartition(".")[0]).register_module(
        specs["down"].prev_op.rpartition(".")[2], nn.Linear(up.in_features, up.out_features // 2, bias=False)
    )
    with pytest.raises(ScalingGroupError, match="family description is wrong"):
        resolve_groups(block, gqa)


@pytest.mark.parametrize("family_name", FAMILY_NAMES)
def test_awq_scales_o_and_down_where_the_shapes_allow_and_clips_only_what_the_family_lets_it(
    family_name: str, load_tiny: Any, tiny_cache: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWQ searches (and logs a scale exponent for) "down" in every family and "o" exactly where
    there is one value head per query head — through the v rows / up half of a fused linear too.
    Every clip search it runs sees only the rows the family lets it clip: never a q or k row, and the
    v rows of a fused qkv linear still clipped."""
    import qigbench.bases.equalization as equalization

    searched: list[tuple[int, Any]] = []
    real = equalization.search_clip

    def recording(weight: torch.Tensor, *args: Any, rows: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        searched.append((int(weight.shape[0]), None if rows is None else rows.tolist()))
        return real(weight, *args, rows=rows, **kwargs)

    monkeypatch.setattr(equalization, "search_clip", recording)
    _, _, mha = _specimen(family_name, load_tiny)
    model, family, report = _quantize_specimen(family_name, "awq", "W3A16g16", tiny_cache, {"clip_search": "true"})
    for stats in report.blocks:
        searched_scales = {name for name, group_stats in stats["groups"].items() if "alpha" in group_stats}
        assert searched_scales == ({"qkv", "o", "gate_up", "down"} if mha else {"qkv", "gate_up", "down"})
    block = get_blocks(model, family)[0]
    expected = []
    for group in resolve_groups(block, family):
        for name, lin in zip(group.linear_names, group.linears, strict=True):
            frozen = group.unclipped.get(name, ())
            if rows_width(frozen) == lin.out_features:
                assert f"clip_mean.{name}" not in report.blocks[0]["groups"].get(group.name, {})
                continue
            keep = sorted(set(range(lin.out_features)) - set(rows_index(frozen).tolist())) if frozen else None
            expected.append((lin.out_features, keep))
    assert searched[: len(expected)] == expected  # block 0's searches, in data-flow order
    assert len(searched) == len(expected) * len(get_blocks(model, family))
    assert family.unclipped, "every family names what the clip search must leave alone (q and k)"


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


@pytest.mark.parametrize("family_name", FAMILY_NAMES)
def test_the_groups_a_family_marks_token_wise_map_each_token_on_its_own(family_name: str, load_tiny: Any) -> None:
    """``token_wise`` is what lets leave-one-out score every token from two forwards: for each group
    the family marks, changing one input token changes that output token only, through the fp module
    and through its RTN twin with per-token activations. The attention module mixes tokens and is
    never marked; every family marks its MLP groups."""
    from qigbench.quant import quantize_linears_

    block, family, _ = _specimen_block(family_name, load_tiny)
    groups = resolve_groups(block, family)
    marked = [g for g in groups if g.spec.token_wise]
    assert {g.name for g in marked} >= {"gate_up", "down"}, family_name
    assert all(g.spec.kind is not GroupKind.ATTENTION or isinstance(g.inspect, nn.Linear) for g in marked)
    twin = copy.deepcopy(block).float()
    quantize_linears_(twin, "W4A8")
    for g in marked:
        for module in (g.inspect.float(), twin.get_submodule(g.spec.inspect)):
            torch.manual_seed(0)
            x = torch.randn(2, 7, g.linears[0].in_features)
            changed = x.clone()
            changed[:, 3] = torch.randn(2, x.shape[-1]) * 3
            with torch.no_grad():
                y, y2 = module(x), module(changed)
            others = [i for i in range(7) if i != 3]
            torch.testing.assert_close(y2[:, others], y[:, others], rtol=1e-5, atol=1e-6, msg=f"{family_name} {g.name}")
            assert not torch.allclose(y2[:, 3], y[:, 3]), (family_name, g.name)
