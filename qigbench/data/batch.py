"""What a calibration loader hands to the engine: typed batches plus where they came from."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch

from qigbench.tokens import TokenType

CalibrationKind = Literal["caption", "ocr", "text"]
IGNORE_INDEX = -100  # label value the HF loss ignores


@dataclass(frozen=True)
class CalibrationBatch:
    """One batch, ready for ``model(**batch.inputs)``.

    ``inputs`` is whatever the model's processor returns (input_ids, attention_mask, pixel_values,
    image_grid_thw, ...). ``answer_mask`` marks the answer (caption / OCR answer) tokens: MBQ's
    supervised loss and its "answer tokens" statistic are computed on exactly these positions;
    ``labels`` is ``input_ids`` there and -100 elsewhere (HF models shift labels internally).
    For plain-text sets every non-padding token is predicted, so the answer mask is all of them.
    """

    inputs: dict[str, torch.Tensor]
    token_types: torch.Tensor  # [B, T] long, qigbench.tokens.TokenType values
    answer_mask: torch.Tensor  # [B, T] bool
    labels: torch.Tensor  # [B, T] long
    sample_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        shape = self.input_ids.shape
        for name in ("token_types", "answer_mask", "labels"):
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name} has shape {tuple(getattr(self, name).shape)}, input_ids {tuple(shape)}")

    @property
    def input_ids(self) -> torch.Tensor:
        return self.inputs["input_ids"]

    @property
    def attention_mask(self) -> torch.Tensor:
        return self.inputs["attention_mask"]

    @property
    def size(self) -> int:
        return int(self.input_ids.shape[0])

    def count(self, token_type: TokenType) -> torch.Tensor:
        """Per-row number of positions of one token type, [B]."""
        return (self.token_types == token_type).sum(dim=-1)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> CalibrationBatch:
        """Move every tensor to ``device``; floating inputs (pixel values) also to ``dtype`` if given."""

        def move(t: torch.Tensor) -> torch.Tensor:
            if dtype is not None and t.is_floating_point():
                return t.to(device=device, dtype=dtype)
            return t.to(device)

        return replace(
            self,
            inputs={k: move(v) for k, v in self.inputs.items()},
            token_types=move(self.token_types),
            answer_mask=move(self.answer_mask),
            labels=move(self.labels),
        )


@dataclass(frozen=True)
class CalibrationSet:
    """The batches of one calibration run and its provenance (stored with results)."""

    batches: tuple[CalibrationBatch, ...]
    source: str
    kind: CalibrationKind
    n_samples: int
    seed: int
    sha256: str  # hash of the calibration file (JSON / text), not of the images
    max_length: int | None = None
    sample_ids: tuple[str, ...] = field(default=())

    def __iter__(self) -> Iterator[CalibrationBatch]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)

    def provenance(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "n_samples": self.n_samples,
            "seed": self.seed,
            "sha256": self.sha256,
            "max_length": self.max_length,
            "batch_sizes": [b.size for b in self.batches],
        }


def pad_rows(rows: Sequence[torch.Tensor], value: int, side: str) -> torch.Tensor:
    """Stack 1-D rows of different lengths into [B, T], padding on ``side`` ("left" or "right")."""
    if side not in ("left", "right"):
        raise ValueError(f"padding side must be 'left' or 'right', got {side!r}")
    length = max(int(r.shape[0]) for r in rows)
    out = torch.full((len(rows), length), value, dtype=rows[0].dtype)
    for i, row in enumerate(rows):
        n = int(row.shape[0])
        if side == "right":
            out[i, :n] = row
        else:
            out[i, length - n :] = row
    return out


def chunked(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    """Split into consecutive groups of ``size`` (the last one may be smaller)."""
    if size < 1:
        raise ValueError(f"batch_size must be at least 1, got {size}")
    return [items[i : i + size] for i in range(0, len(items), size)]
