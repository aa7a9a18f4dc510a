"""``qigbench cost`` end to end on a narrowed real shape: 2 blocks, 2 samples, a method with a prepare pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qigbench.cli import main


def test_cost_measures_blocks_and_predicts_the_real_depth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cost.json"
    code = main([
        "cost", "--model", "shape:llama2-7b", "--blocks", "2", "--width-divisor", "8", "--method", "mbq",
        "--format", "W4A8", "--samples", "2", "--batch-size", "2", "--cache-dir", str(tmp_path),
        "--no-progress", "--json", str(out), "--prepare-depths", "1",
    ])
    assert code == 0
    text = capsys.readouterr().out
    assert "Table 6 layout" in text and "2 of 32 decoder blocks" in text and "not in the paper's Table 6" in text
    # timed at one depth only (steady in CI): the prediction says what it rests on
    assert "warnings (the predictions above rest on these)" in text and "upper bound" in text
    row = json.loads(out.read_text())["rows"][0]
    m, p = row["measurement"], row["prediction"]
    assert m["blocks"] == 2 and len(m["block_seconds"]) == 2
    assert m["prepare"]["seconds"] > 0 and m["prepare_at"] == []  # MBQ's gradient pass, at 2 blocks only
    assert m["capture"]["seconds"] > 0
    assert p["depth"] == 32
    b0, b1 = m["block_seconds"]  # block 0 once (it pays the first pass's warm-up), the others x (depth - 1)
    assert p["parts"]["blocks"] == pytest.approx(b0 + 31 * b1)
    assert p["seconds"] > m["total_seconds"]  # 30 more blocks cost more than the 2 measured
    assert 0 < row["mean_block_error"] < 1


def test_cost_refuses_a_model_without_a_real_shape(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", "--model", "tiny-llama", "--method", "rtn"]) == 2
    assert "shape:qwen2vl-7b" in capsys.readouterr().err
