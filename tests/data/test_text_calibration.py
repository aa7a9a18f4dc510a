"""Plain-text calibration for language models: fixed-length chunks, seeded, with named errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from qigbench.data import CalibrationSizeError, default_calibration, load_calibration
from qigbench.data.defaults import is_multimodal
from qigbench.data.records import read_passages
from qigbench.tokens import TokenType


def test_text_chunks_are_windows_of_the_token_stream(load_tiny, text_set: Path) -> None:  # type: ignore[no-untyped-def]
    loaded = load_tiny("tiny-llama")
    tok = loaded.tokenizer
    calib = load_calibration(text_set, model=loaded, n_samples=5, seed=0, batch_size=2, max_length=24)
    assert calib.kind == "text" and [b.size for b in calib] == [2, 2, 1] and calib.max_length == 24
    stream: list[int] = []
    for passage in read_passages(text_set):
        stream += tok(passage, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    bos = tok.bos_token_id if tok("a")["input_ids"][:1] == [tok.bos_token_id] else None
    body = 24 - (bos is not None)
    for batch in calib:
        assert batch.input_ids.shape[1] == 24 and batch.attention_mask.all() and batch.answer_mask.all()
        assert torch.equal(batch.labels, batch.input_ids)
        for row, sample_id in enumerate(batch.sample_ids):
            k = int(sample_id.removeprefix("chunk-"))
            assert batch.input_ids[row, -body:].tolist() == stream[k * body : (k + 1) * body]
            is_eos = batch.input_ids[row] == tok.eos_token_id
            assert (batch.token_types[row][is_eos] == TokenType.SPECIAL).all()
            assert (batch.token_types[row][~is_eos & (batch.input_ids[row] != bos)] == TokenType.TEXT).all()
    again = load_calibration(text_set, model=loaded, n_samples=5, seed=0, batch_size=2, max_length=24)
    other = load_calibration(text_set, model=loaded, n_samples=5, seed=1, batch_size=2, max_length=24)
    assert again.sample_ids == calib.sample_ids != other.sample_ids
    with torch.no_grad():
        assert torch.isfinite(loaded.model(**calib.batches[0].inputs, labels=calib.batches[0].labels).loss)


def test_too_little_text_says_how_many_chunks(load_tiny, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "short.txt"
    path.write_text("A short passage.\n\nAnother one.\n")
    with pytest.raises(CalibrationSizeError, match=r"has 0 chunks of 512 tokens .* n_samples=128"):
        load_calibration(path, model=load_tiny("tiny-llama"))
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(CalibrationSizeError, match=r"has 0 chunks.*add text"):
        load_calibration(empty, model=load_tiny("tiny-llama"), n_samples=1)


def test_default_calibration_picks_the_kind(tmp_path: Path, load_tiny) -> None:  # type: ignore[no-untyped-def]
    assert is_multimodal("tiny-qwen2vl") and not is_multimodal("tiny-llama") and not is_multimodal("smollm2-135m")
    assert is_multimodal(load_tiny("tiny-llava-ov")) and not is_multimodal(load_tiny("tiny-llama").family)
    caption = default_calibration("tiny-qwen2vl", tmp_path, n=6, image_size=32)
    assert caption.name == "caption.json" and caption.is_file()
    assert default_calibration("tiny-qwen2vl", tmp_path, n=6, image_size=32) == caption  # cached
    text = default_calibration(load_tiny("tiny-llama"), tmp_path, n=2)
    assert text.name == "text.jsonl"
    calib = load_calibration(text, model=load_tiny("tiny-llama"), n_samples=2, max_length=512)
    assert [b.input_ids.shape[1] for b in calib] == [512, 512]
    vlm = load_calibration(caption, model=load_tiny("tiny-qwen2vl"), n_samples=6, batch_size=6)
    assert vlm.batches[0].size == 6
