"""Caption / OCR batches on the tiny VLMs: exact answer masks, vision counts, padding, seeding."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from qigbench.data import CalibrationDataError, CalibrationImageError, load_calibration
from qigbench.data.batch import IGNORE_INDEX, CalibrationBatch
from qigbench.tokens import TokenType

VLMS = ("tiny-qwen2vl", "tiny-qwen2.5vl", "tiny-llava-ov", "tiny-internvl", "tiny-llava")


@contextmanager
def padding_side(tokenizer, side: str) -> Iterator[None]:  # type: ignore[no-untyped-def]
    old = tokenizer.padding_side
    tokenizer.padding_side = side
    try:
        yield
    finally:
        tokenizer.padding_side = old


def _answers(path: Path) -> dict[str, str]:
    return {e["id"]: e["conversations"][1]["value"] for e in json.loads(path.read_text())}


def _check_batch(batch: CalibrationBatch, loaded, answers: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    tok = loaded.tokenizer
    ids, types, mask = batch.input_ids, batch.token_types, batch.answer_mask
    image_id = tok.convert_tokens_to_ids(loaded.processor.image_token)
    for row, sample_id in enumerate(batch.sample_ids):
        answer_ids = ids[row][mask[row]].tolist()
        # exactly the answer's own tokens, contiguous, all text, followed by the end-of-turn marker
        assert answer_ids == tok(answers[sample_id], add_special_tokens=False)["input_ids"]
        assert tok.decode(answer_ids) == answers[sample_id]
        where = mask[row].nonzero().flatten()
        assert (where == torch.arange(int(where[0]), int(where[-1]) + 1)).all()
        assert (types[row][mask[row]] == TokenType.TEXT).all()
        assert types[row][int(where[-1]) + 1] == TokenType.SPECIAL
        # vision positions are exactly the image placeholders the processor inserted
        assert int(batch.count(TokenType.VISION)[row]) == int((ids[row] == image_id).sum()) > 0
        assert ((types[row] == TokenType.VISION) == (ids[row] == image_id)).all()
        # padding
        pad = batch.attention_mask[row] == 0
        assert ((types[row] == TokenType.PAD) == pad).all()
    assert (batch.labels[batch.answer_mask] == ids[batch.answer_mask]).all()
    assert (batch.labels[~batch.answer_mask] == IGNORE_INDEX).all()


@pytest.mark.parametrize("alias", VLMS)
@pytest.mark.parametrize("side", ["left", "right"])
def test_caption_batches(load_tiny, caption_set: Path, alias: str, side: str) -> None:  # type: ignore[no-untyped-def]
    loaded = load_tiny(alias)
    with padding_side(loaded.tokenizer, side):
        calib = load_calibration(caption_set, model=loaded, n_samples=5, seed=1, batch_size=3)
    assert [b.size for b in calib] == [3, 2]
    assert calib.kind == "caption" and len(calib.sample_ids) == 5
    answers = _answers(caption_set)
    for batch in calib:
        _check_batch(batch, loaded, answers)
        lengths = batch.attention_mask.sum(-1)
        if lengths.min() < lengths.max():  # padding sits on the tokenizer's side
            short = int(lengths.argmin())
            edge = 0 if side == "left" else -1
            assert batch.attention_mask[short, edge] == 0
    with torch.no_grad():
        out = loaded.model(**calib.batches[0].inputs, labels=calib.batches[0].labels)
    assert torch.isfinite(out.loss)


def test_qwen2vl_vision_count_matches_image_grid(load_tiny, caption_set: Path) -> None:  # type: ignore[no-untyped-def]
    loaded = load_tiny("tiny-qwen2vl")
    (batch,) = load_calibration(caption_set, model=loaded, n_samples=2, seed=0, batch_size=2).batches
    merge = loaded.processor.image_processor.merge_size
    expected = batch.inputs["image_grid_thw"].prod(-1) // merge**2
    assert batch.count(TokenType.VISION).tolist() == expected.tolist()


def test_ocr_set_and_seeded_determinism(load_tiny, ocr_set: Path) -> None:  # type: ignore[no-untyped-def]
    loaded = load_tiny("tiny-qwen2vl")
    a = load_calibration(ocr_set, model=loaded, n_samples=4, seed=7, batch_size=2, kind="ocr")
    b = load_calibration(ocr_set, model=loaded, n_samples=4, seed=7, batch_size=2, kind="ocr")
    c = load_calibration(ocr_set, model=loaded, n_samples=4, seed=8, batch_size=2, kind="ocr")
    assert a.kind == "ocr" and a.sample_ids == b.sample_ids != c.sample_ids
    assert a.sha256 == c.sha256 and a.provenance()["batch_sizes"] == [2, 2]
    for x, y in zip(a, b, strict=True):
        assert all(torch.equal(x.inputs[k], y.inputs[k]) for k in x.inputs)
    for batch in a:
        _check_batch(batch, loaded, _answers(ocr_set))


def test_max_length_truncates_only_the_answer(load_tiny, caption_set: Path) -> None:  # type: ignore[no-untyped-def]
    loaded = load_tiny("tiny-qwen2vl")
    full = load_calibration(caption_set, model=loaded, n_samples=1, seed=0)
    n_tokens, n_answer = int(full.batches[0].attention_mask.sum()), int(full.batches[0].answer_mask.sum())
    cut = load_calibration(caption_set, model=loaded, n_samples=1, seed=0, max_length=n_tokens - 2)
    batch = cut.batches[0]
    assert int(batch.attention_mask.sum()) == n_tokens - 2
    assert int(batch.answer_mask.sum()) == n_answer - 2
    assert batch.count(TokenType.VISION).tolist() == full.batches[0].count(TokenType.VISION).tolist()
    with pytest.raises(CalibrationDataError, match="no room for the answer"):
        load_calibration(caption_set, model=loaded, n_samples=1, seed=0, max_length=10)


def test_missing_image_surfaces_through_the_loader(load_tiny, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    entry = {
        "id": "coco-42",
        "image": "train2017/000000000042.jpg",
        "conversations": [{"from": "human", "value": "<image>\nDescribe."}, {"from": "gpt", "value": "A dog."}],
    }
    path = tmp_path / "sharegpt4v.json"
    path.write_text(json.dumps([entry]))
    with pytest.raises(CalibrationImageError, match=r"'coco-42'.*train2017/000000000042\.jpg"):
        load_calibration(path, model=load_tiny("tiny-qwen2vl"), n_samples=1)


def test_caption_set_on_a_language_model_is_refused(load_tiny, caption_set: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CalibrationDataError, match=r"text-only.*kind='text'"):
        load_calibration(caption_set, model=load_tiny("tiny-llama"), n_samples=1)


class _TemplateOnly:
    """A processor stand-in whose chat template is a plain function (LLaVA-1.5 style or broken)."""

    def __init__(self, render) -> None:  # type: ignore[no-untyped-def]
        self.render = render

    def apply_chat_template(self, messages, tokenize: bool = False) -> str:  # type: ignore[no-untyped-def]
        user, assistant = (m["content"][-1]["text"] for m in messages)
        return self.render(user, assistant)


def test_render_splits_where_the_template_put_the_answer(load_tiny) -> None:  # type: ignore[no-untyped-def]
    from qigbench.data.conversation import render
    from qigbench.data.records import ConversationRecord

    tok = load_tiny("tiny-qwen2vl").tokenizer
    record = ConversationRecord("s1", Path("x.png"), "Describe.", "A cat on a mat.")
    llava15 = _TemplateOnly(lambda u, a: f"USER: <image>\n{u} ASSISTANT: {a} </s>")
    parts = render(record, llava15, tok)
    assert parts.prompt == "USER: <image>\nDescribe. ASSISTANT: "
    assert tok.decode(parts.answer_ids) == "A cat on a mat." and tok.decode(parts.suffix_ids) == " </s>"
    shouting = _TemplateOnly(lambda u, a: f"USER: {u} ASSISTANT: {a.upper()}")
    with pytest.raises(CalibrationDataError, match=r"'s1'.*does not contain the answer text"):
        render(record, shouting, tok)
