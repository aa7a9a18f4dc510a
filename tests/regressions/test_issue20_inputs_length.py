"""Issue 20 item 10: no default maximum length, and an oversize allocation was a traceback.

Was: a 10,000-token caption ran on tiny-qwen2vl past its 512 positions (QIG: killed at 11 GB on a
24 GB machine; elsewhere ``RuntimeError: can't allocate 40043211664 bytes``, a traceback). Now the
default maximum is the text config's ``max_position_embeddings`` (answers are cut to fit, with a
warning), ``--max-length`` past it is refused, and a failed allocation of any wording is the
out-of-memory message naming ``--max-length`` and ``--memory-budget``.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from qigbench.cli import main
from qigbench.data.defaults import default_calibration
from qigbench.data.loader import load_calibration
from qigbench.models import load_model

LIMIT = 512  # tiny-qwen2vl's text_config.max_position_embeddings


@pytest.fixture(scope="module")
def qwen():  # type: ignore[no-untyped-def]
    return load_model("tiny-qwen2vl")


def _long_caption_set(tmp_path: Path, words: int = 10_000) -> Path:
    source = default_calibration("tiny-qwen2vl", n=128)
    entries = json.loads(source.read_text())[:2]
    shutil.copytree(source.parent / "images", tmp_path / "images")
    entries[0]["conversations"][1]["value"] = " ".join(["red"] * words)
    path = tmp_path / "caption.json"
    path.write_text(json.dumps(entries))
    return path


def test_a_10000_token_caption_is_cut_to_the_models_position_limit(
    qwen, tmp_path: Path, caplog: pytest.LogCaptureFixture  # type: ignore[no-untyped-def]
) -> None:
    path = _long_caption_set(tmp_path)
    with caplog.at_level(logging.WARNING, logger="qigbench"):
        calib = load_calibration(path, model=qwen, n_samples=2, batch_size=2)
    (batch,) = calib.batches
    assert batch.inputs["input_ids"].shape[1] == LIMIT  # was 10,000+
    assert int(batch.answer_mask.sum(dim=1).max()) < LIMIT and int(batch.answer_mask.sum(dim=1).min()) > 0
    assert calib.max_length == LIMIT
    warned = caplog.text
    assert "1 of 2 samples were cut to fit 512 tokens" in warned and "max_position_embeddings" in warned, warned
    assert "synthetic-caption-0-00000" in warned


def test_short_samples_are_not_changed_by_the_default(qwen) -> None:  # type: ignore[no-untyped-def]
    """The default set fits the limit, so no stored number moves (same batches with and without it)."""
    source = default_calibration("tiny-qwen2vl", n=128)
    default = load_calibration(source, model=qwen, n_samples=8, batch_size=4)
    wide = load_calibration(source, model=qwen, n_samples=8, batch_size=4, max_length=LIMIT)
    for a, b in zip(default.batches, wide.batches, strict=True):
        assert torch.equal(a.inputs["input_ids"], b.inputs["input_ids"])


def test_max_length_past_the_limit_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["quantize", "--model", "tiny-qwen2vl", "--method", "awq", "--samples", "2", "--no-progress",
            "--max-length", "600"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--max-length 600 is past tiny-qwen2vl's position limit" in err, err
    assert "max_position_embeddings=512" in err and "--max-length 512 or less" in err


ALLOCATION_FAILURES = {
    "oversize": RuntimeError("can't allocate 40043211664 bytes"),
    "cpu-allocator": RuntimeError(
        "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: you tried to allocate "
        "40043211664 bytes."
    ),
    "cuda": torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 37.29 GiB. GPU 0 has a total capacity"),
}


@pytest.mark.parametrize("kind", sorted(ALLOCATION_FAILURES))
def test_an_oversize_allocation_is_the_out_of_memory_message(
    kind: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from methods.rtn import RTN

    def allocate(self: object, ctx: object) -> None:
        raise ALLOCATION_FAILURES[kind]

    monkeypatch.setattr(RTN, "quantize_block", allocate)
    assert main(["quantize", "--model", "tiny-qwen2vl", "--method", "rtn", "--samples", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "out of memory on cpu in block 0" in err, err
    assert "--memory-budget" in err and "--max-length" in err and "longest calibration sample has" in err
    assert "Traceback" not in err


def test_is_out_of_memory_knows_every_allocator_wording() -> None:
    from qigbench.memory import is_out_of_memory

    assert all(is_out_of_memory(exc) for exc in ALLOCATION_FAILURES.values())
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not is_out_of_memory(ValueError("can't allocate"))  # only allocator errors (RuntimeError)
