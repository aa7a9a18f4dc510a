"""Laws of the batch helpers: padding keeps every row intact on the tokenizer's side."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qigbench.data.batch import CalibrationBatch, chunked, pad_rows

rows_strategy = st.lists(st.lists(st.integers(1, 1000), min_size=1, max_size=12), min_size=1, max_size=6)


@settings(max_examples=60)
@given(rows=rows_strategy, side=st.sampled_from(["left", "right"]))
def test_pad_rows_keeps_rows_on_the_right_side(rows: list[list[int]], side: str) -> None:
    out = pad_rows([torch.tensor(r) for r in rows], 0, side)
    width = max(map(len, rows))
    assert out.shape == (len(rows), width)
    for row, values in zip(out, rows, strict=True):
        real = row[width - len(values) :] if side == "left" else row[: len(values)]
        pad = row[: width - len(values)] if side == "left" else row[len(values) :]
        assert real.tolist() == values and (pad == 0).all()


@settings(max_examples=40)
@given(n=st.integers(0, 40), size=st.integers(1, 9))
def test_chunked_partitions_in_order(n: int, size: int) -> None:
    groups = chunked(list(range(n)), size)
    assert [x for g in groups for x in g] == list(range(n))
    assert all(len(g) == size for g in groups[:-1]) and all(1 <= len(g) <= size for g in groups)


def test_batch_shapes_are_checked_and_to_casts_only_floats() -> None:
    ids = torch.ones(2, 3, dtype=torch.long)
    inputs = {"input_ids": ids, "attention_mask": ids.clone(), "pixel_values": torch.zeros(4, 5)}
    batch = CalibrationBatch(inputs, ids.clone(), ids.bool(), ids.clone())
    moved = batch.to("cpu", torch.bfloat16)
    assert moved.inputs["pixel_values"].dtype == torch.bfloat16 and moved.input_ids.dtype == torch.long
    with pytest.raises(ValueError, match="answer_mask"):
        CalibrationBatch(inputs, ids.clone(), torch.ones(2, 4, dtype=torch.bool), ids.clone())
