"""Give every calibration batch the same sequence length.

Solvers see all calibration tokens as one ``[N, T, H]`` tensor, so batches produced with their own
padding are re-padded to the longest one. Only per-token tensors (``[B, T]``: ids, masks, token
types) are padded, on the tokenizer's padding side; image tensors are untouched, and the model
recomputes positions from the new attention mask.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import torch
import torch.nn.functional as F

from qigbench.tokens import TokenType

B = TypeVar("B")

#: fill values of the per-token tensors a batch may carry
_FILL = {"input_ids": 0, "attention_mask": 0, "labels": -100, "mm_token_type_ids": 0, "token_type_ids": 0}


def _pad(t: torch.Tensor, length: int, value: float, left: bool) -> torch.Tensor:
    extra = length - t.shape[1]
    if extra <= 0:
        return t
    return F.pad(t, (extra, 0) if left else (0, extra), value=value)


def unify_lengths(batches: list[B], pad_token_id: int | None = None) -> list[B]:
    if not batches:
        return batches
    lengths = {b.token_types.shape[1] for b in batches}  # type: ignore[attr-defined]
    if len(lengths) == 1:
        return batches
    length = max(lengths)
    out = []
    for batch in batches:
        tt: torch.Tensor = batch.token_types  # type: ignore[attr-defined]
        bsz, t = tt.shape
        mask = batch.inputs.get("attention_mask")  # type: ignore[attr-defined]
        # left padding iff some row starts with padding while its end is real
        left = bool(mask is not None and (mask[:, 0] == 0).any() and (mask[:, -1] == 1).all())
        inputs: dict[str, Any] = {}
        for key, value in batch.inputs.items():  # type: ignore[attr-defined]
            if isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape == (bsz, t):
                fill = _FILL.get(key, 0)
                if key == "input_ids" and pad_token_id is not None:
                    fill = pad_token_id
                inputs[key] = _pad(value, length, fill, left)
            else:
                inputs[key] = value
        changes: dict[str, Any] = {"inputs": inputs, "token_types": _pad(tt, length, int(TokenType.PAD), left)}
        for name in ("answer_mask", "labels"):
            value = getattr(batch, name, None)
            if isinstance(value, torch.Tensor):
                padded = _pad(value.long(), length, -100 if name == "labels" else 0, left)
                changes[name] = padded.to(value.dtype)
        out.append(dataclasses.replace(batch, **changes))  # type: ignore[type-var]
    return out
