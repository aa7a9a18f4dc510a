"""unify_lengths: batches re-padded to one length on their own padding side, images untouched."""

from __future__ import annotations

import torch

from qigbench.data.batch import CalibrationBatch
from qigbench.engine.collate import unify_lengths
from qigbench.tokens import TokenType


def _batch(length: int, *, left: bool, pad_first_row: int = 0) -> CalibrationBatch:
    ids = torch.arange(1, 2 * length + 1).reshape(2, length)
    mask = torch.ones(2, length, dtype=torch.long)
    if pad_first_row:
        if left:
            mask[0, :pad_first_row] = 0
        else:
            mask[0, -pad_first_row:] = 0
    types = torch.where(mask.bool(), int(TokenType.TEXT), int(TokenType.PAD))
    labels = torch.where(mask.bool(), ids, -100)
    inputs = {"input_ids": ids, "attention_mask": mask, "pixel_values": torch.randn(4, 6)}
    return CalibrationBatch(inputs=inputs, token_types=types, answer_mask=mask.bool(), labels=labels)


def test_equal_lengths_are_returned_as_they_are() -> None:
    batches = [_batch(4, left=False), _batch(4, left=False)]
    assert unify_lengths(batches) is batches


def test_right_padded_batches_are_padded_on_the_right() -> None:
    short, long = _batch(3, left=False, pad_first_row=1), _batch(5, left=False)
    out = unify_lengths([short, long], pad_token_id=99)
    s = out[0]
    assert s.token_types.shape == (2, 5)
    assert s.inputs["input_ids"][:, 3:].eq(99).all() and s.inputs["attention_mask"][:, 3:].eq(0).all()
    assert s.labels[:, 3:].eq(-100).all() and not s.answer_mask[:, 3:].any()
    assert s.token_types[:, 3:].eq(int(TokenType.PAD)).all()
    assert torch.equal(s.inputs["input_ids"][:, :3], short.inputs["input_ids"])
    assert s.inputs["pixel_values"] is short.inputs["pixel_values"]
    assert out[1] is long or torch.equal(out[1].inputs["input_ids"], long.inputs["input_ids"])


def test_left_padded_batches_are_padded_on_the_left() -> None:
    short, long = _batch(3, left=True, pad_first_row=1), _batch(5, left=True)
    s = unify_lengths([short, long])[0]
    assert s.inputs["attention_mask"][:, :2].eq(0).all()
    assert torch.equal(s.inputs["input_ids"][:, 2:], short.inputs["input_ids"])
    assert s.token_types[:, :2].eq(int(TokenType.PAD)).all()
