"""``--save`` is checked before calibrating, and a save killed half-way leaves no half model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import ROOT

import qigbench.pipeline
from qigbench.cli import main
from qigbench.pipeline import RECORD_NAME, QuantizeRequest, load_quantized, quantize, save_quantized


@pytest.fixture
def no_calibration(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("calibration started before the output path was checked")

    monkeypatch.setattr(qigbench.pipeline, "quantize", refuse)


@pytest.mark.parametrize("target", ["file", "unwritable", "foreign"])
def test_save_target_is_validated_before_calibration(
    target: str, no_calibration: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if target == "file":
        path, expected = tmp_path / "model.bin", "is an existing file"
        path.write_text("not a folder")
    elif target == "unwritable":
        if not Path("/proc").is_dir():
            pytest.skip("needs a read-only /proc (Linux)")
        path, expected = Path("/proc/qigbench-cannot-exist/model"), "cannot write into"
    else:
        path, expected = tmp_path / "photos", "folder with other files"
        path.mkdir()
        (path / "holiday.jpg").write_bytes(b"\xff\xd8")
    assert main(["quantize", "--model", "tiny-qwen2vl", "--method", "rtn", "--samples", "2", "--save", str(path)]) == 2
    assert expected in capsys.readouterr().err


_KILLED_SAVE = textwrap.dedent(
    """
    import sys, time
    from qigbench.pipeline import QuantizeRequest, quantize, save_quantized
    result = quantize(QuantizeRequest(model="tiny-qwen2vl", method="rtn", format="W4A16", samples=2,
                                      batch_size=2, progress=False))
    model = result.loaded.model
    original = type(model).save_pretrained
    def slow(self, *args, **kwargs):
        original(self, *args, **kwargs)
        print("WEIGHTS-WRITTEN", flush=True)
        time.sleep(600)
    model.save_pretrained = slow.__get__(model)
    save_quantized(result, sys.argv[1])
    """
)


def _kill_mid_save(target: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_SAVE, str(target)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 300
        for line in proc.stdout:
            if "WEIGHTS-WRITTEN" in line or time.monotonic() > deadline:
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def test_sigkill_during_save_leaves_no_half_written_model(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    _kill_mid_save(fresh)
    assert not fresh.exists()  # was: config.json + weights and no record -> a transformers traceback later

    # over an earlier complete save: that one stays loadable
    previous = tmp_path / "previous"
    result = quantize(QuantizeRequest(model="tiny-qwen2vl", method="rtn", format="W4A16", samples=2, batch_size=2,
                                      progress=False))
    save_quantized(result, previous)
    before = (previous / RECORD_NAME).read_text()
    _kill_mid_save(previous)
    assert (previous / RECORD_NAME).read_text() == before
    load_quantized(previous)
    assert list(tmp_path.glob(".previous.partial-*"))  # the killed attempt's hidden leftover ...
    save_quantized(result, previous)
    assert not list(tmp_path.glob(".previous.*"))  # ... is cleaned up by the next save
    assert {p.name for p in previous.iterdir()} >= {"config.json", "model.safetensors", RECORD_NAME}
