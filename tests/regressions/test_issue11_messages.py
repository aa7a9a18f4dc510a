"""Bad input answered with a message naming the fix (exit 2), not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from qigbench.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_batch_size_zero_is_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quantize", "--model", "tiny-qwen2vl", "--method", "rtn", "--samples", "2", "--batch-size", "0"]) == 2
    assert "--batch-size must be >= 1, got 0" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
@pytest.mark.parametrize("command", ["quantize", "run"])
def test_device_cuda_without_cuda_is_a_message(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = {
        "quantize": ["quantize", "--model", "tiny-qwen2vl", "--method", "rtn", "--samples", "2"],
        "run": ["run", "--db", str(tmp_path / "r.db"), "--out", str(tmp_path / "rep")],
    }[command]
    assert main([*argv, "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "asks for CUDA" in err and "--device cpu" in err
    assert not (tmp_path / "r.db").exists()


@pytest.mark.parametrize("command", ["report", "check"])
def test_a_file_that_is_not_sqlite_is_a_message(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "results.db"
    db.write_text("model,method\nqwen2vl,qig\n")
    baseline = str(ROOT / "reports/baseline/baseline.json")
    extra = ["--out", str(tmp_path / "rep")] if command == "report" else ["--baseline", baseline]
    assert main([command, "--db", str(db), *extra]) == 2
    assert "is not a results database (not an SQLite file)" in capsys.readouterr().err
    assert db.read_text().startswith("model,method")  # left as it was
