"""QIG options that used to fail end to end (issue 11): the released-code reference mode and the
quantized-path baseline for weight-only formats run through the whole engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from qigbench.pipeline import QuantizeRequest, quantize


def _run(cache_dir: Path, fmt: str, batch_size: int, **options: str):  # type: ignore[no-untyped-def]
    request = QuantizeRequest(
        model="tiny-qwen2vl", method="qig", format=fmt, samples=4, batch_size=batch_size, max_length=64,
        options=(("n_grid", "4"), ("qig.steps", "2"), *options.items()), cache_dir=str(cache_dir), progress=False,
    )  # fmt: skip
    return quantize(request).report


@pytest.mark.parametrize(("fmt", "batch_size"), [("W3A16", 2), ("W4A8", 2), ("W3A16", 1), ("W4A8", 1)])
def test_reference_mode_runs_end_to_end(cache_dir: Path, fmt: str, batch_size: int) -> None:
    report = _run(cache_dir, fmt, batch_size, **{"qig.reference": "true"})
    assert all(0 <= b["rel_error"] < 1 for b in report.blocks)
    groups = [g for b in report.blocks for g in b["groups"].values()]
    # the released code's five warm-up searches, then real attributions with padding unmasked
    assert sum(1 for g in groups if g.get("sens.warmup_uniform")) == 5
    assert any("sens.padding_share" in g for g in groups)
    if batch_size == 2:  # samples of different lengths: padding did take weight before it was dropped
        assert any(g.get("sens.padding_share", 0) > 0 for g in groups)


def test_quantized_baseline_in_a_weight_only_format(cache_dir: Path) -> None:
    """W3A16 with qig.baseline=quantized: x^q is the input along the RTN-quantized block path."""
    report = _run(cache_dir, "W3A16", 2, **{"qig.baseline": "quantized"})
    groups = [(b["block"], name, g) for b in report.blocks for name, g in b["groups"].items()]
    first_block_first_group = groups[0][2]
    # nothing is quantized upstream of block 0's first group: x == x^q, logged uniform fallback
    assert first_block_first_group["sens.degenerate_fallback"] is True
    later = [g for block, _, g in groups if block > 0]
    assert later and not any(g["sens.degenerate_fallback"] for g in later)
