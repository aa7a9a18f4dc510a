"""Laws over *every registered family* (issue 11): no linear of a decoder block is left in full
precision by accident, and no previous op that cannot absorb ``1/s`` is ever scaled.

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
from qigbench.models.registry import FAMILIES, block_linear_names, family_for, get_blocks
from qigbench.pipeline import QuantizeRequest, quantize
from qigbench.quant import QuantLinear

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
            model, family, mock_batches(), get_method(method, options), fmt, EngineConfig(progress=False)
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
    calibrate(model, trimmed, mock_batches(), get_method("awq", FAST["awq"]), "W4A16g16", EngineConfig(progress=False))
    for block in get_blocks(model, trimmed):
        assert isinstance(block.get_submodule("attention.wo"), QuantLinear)
        assert isinstance(block.get_submodule("feed_forward.w2"), QuantLinear)


def test_keep_list_keeps_exactly_what_it_names() -> None:
    model = internvl_chat_tree()
    family = family_for(model)
    keep = (KeptLinear("feed_forward.w2", reason="test: a router-like layer kept in full precision"),)
    trimmed = dataclasses.replace(family, groups=tuple(g for g in family.groups if g.name != "down"), keep_fp=keep)
    calibrate(model, trimmed, mock_batches(), get_method("rtn"), "W4A16g16", EngineConfig(progress=False))
    block = get_blocks(model, trimmed)[0]
    assert isinstance(block.get_submodule("feed_forward.w2"), nn.Linear)
    expected = ["attention.wqkv", "attention.wo", "feed_forward.w1", "feed_forward.w3"]
    assert block_linear_names(block, trimmed) == expected
    with pytest.raises(ScalingGroupError, match="keep_fp"):
        bad = dataclasses.replace(family, keep_fp=(KeptLinear("feed_forward.nope", reason="typo"),))
        block_linear_names(block, bad)


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
        calibrate(model, family, mock_batches(), get_method(method), "W4A8", EngineConfig(progress=False))
    block0 = get_blocks(model, family)[0]
    assert not isinstance(block0.get_submodule("attention.wqkv"), QuantLinear)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items() if k in before)
