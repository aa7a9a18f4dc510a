"""Plain-text calibration for language models: fixed-length token chunks (GPTQ-style).

Passages are tokenized, joined into one stream with the end-of-sequence token between them, and
cut into non-overlapping chunks of ``max_length`` tokens; ``n_samples`` chunks are drawn with
``random.Random(seed)``. If the tokenizer normally starts a sequence with BOS, each chunk starts
with BOS too (``max_length`` includes it), because that is what the model sees in use and its
first-position activations differ sharply without it. Every token is predicted, so the answer
mask is every position and the labels are the input ids.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from qigbench.data.batch import CalibrationBatch, chunked
from qigbench.data.records import check_sample_count, read_passages
from qigbench.models.token_types import classify_tokens

if TYPE_CHECKING:
    from qigbench.models.loading import LoadedModel


def _bos_id(tokenizer: Any) -> int | None:
    """The BOS id if the tokenizer adds it by itself (Llama-style), else None."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return None
    probe = tokenizer("a")["input_ids"]
    return bos if probe and probe[0] == bos else None


def text_chunks(
    path: Path, *, tokenizer: Any, n_samples: int, seed: int, max_length: int
) -> list[tuple[int, list[int]]]:
    """Sample ``n_samples`` chunks of exactly ``max_length`` token ids: (chunk index in the stream, ids)."""
    bos = _bos_id(tokenizer)
    body = max_length - (1 if bos is not None else 0)
    if body < 1:
        raise ValueError(f"max_length must leave room for at least one token, got {max_length}")
    stream: list[int] = []
    for passage in read_passages(path):
        stream.extend(tokenizer(passage, add_special_tokens=False)["input_ids"])
        if tokenizer.eos_token_id is not None:
            stream.append(tokenizer.eos_token_id)
    available = len(stream) // body
    check_sample_count(
        available,
        n_samples,
        path,
        f"chunks of {max_length} tokens ({len(stream)} tokens in all)",
        "add text to the file or lower max_length",
    )
    chosen = random.Random(seed).sample(range(available), n_samples)
    prefix = [bos] if bos is not None else []
    return [(i, prefix + stream[i * body : (i + 1) * body]) for i in chosen]


def text_batches(
    chunks: list[tuple[int, list[int]]], *, loaded: LoadedModel, batch_size: int
) -> list[CalibrationBatch]:
    """Batches of equal-length chunks (no padding needed); token types from the model family."""
    batches = []
    for group in chunked(chunks, batch_size):
        input_ids = torch.tensor([ids for _, ids in group], dtype=torch.long)
        attention_mask = torch.ones_like(input_ids)
        token_types = classify_tokens(
            input_ids, attention_mask, config=loaded.model.config, tokenizer=loaded.tokenizer, family=loaded.family
        )
        ids = tuple(f"chunk-{index}" for index, _ in group)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        batches.append(CalibrationBatch(inputs, token_types, attention_mask.bool(), input_ids.clone(), ids))
    return batches
