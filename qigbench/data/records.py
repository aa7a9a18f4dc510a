"""Reading calibration files from disk: conversation JSON (captions, OCR QA) and plain text.

The conversation format is ShareGPT4V's (the paper's calibration source, COCO captions)::

    [{"id": "000000000009", "image": "coco/train2017/000000000009.jpg",
      "conversations": [{"from": "human", "value": "<image>\\nDescribe the image."},
                        {"from": "gpt", "value": "A plate of food ..."}]}, ...]

Image paths are relative to an image root (default: the JSON file's folder). The OCR set
(InfoVQA-style question / answer about text in the image) uses the same shape. Only the first
human -> gpt exchange of each entry is used: the paper calibrates on single image-caption pairs.

Sampling draws indices with ``random.Random(seed)`` *before* any image is opened, so the same
(file, n, seed) gives the same samples on every machine and unselected images are never read.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from qigbench.errors import QigbenchError

IMAGE_TAG = "<image>"
HUMAN_ROLES = ("human", "user")
ANSWER_ROLES = ("gpt", "assistant")


class CalibrationDataError(QigbenchError, ValueError):
    """A calibration file or one of its entries cannot be used as it is."""


class CalibrationImageError(CalibrationDataError):
    """An image referenced by a calibration sample is missing or unreadable."""


class CalibrationSizeError(CalibrationDataError):
    """The calibration source holds fewer usable samples than were requested."""


@dataclass(frozen=True)
class ConversationRecord:
    """One image + prompt -> answer pair (a caption, or an OCR question and its answer)."""

    sample_id: str
    image_path: Path
    prompt: str  # the human turn without the <image> tag
    answer: str  # the gpt turn: the tokens the supervised (caption) loss is computed on

    def load_image(self) -> Image.Image:
        """Open the image as RGB, or raise an error naming the file and the sample."""
        try:
            with Image.open(self.image_path) as image:
                return image.convert("RGB")
        except FileNotFoundError as exc:
            raise CalibrationImageError(
                f"sample {self.sample_id!r}: image file {self.image_path} does not exist. Check the image root "
                "(`image_root=`; default: the folder of the JSON file) or remove the entry."
            ) from exc
        except (UnidentifiedImageError, OSError) as exc:
            raise CalibrationImageError(
                f"sample {self.sample_id!r}: image file {self.image_path} cannot be read as an image ({exc}). "
                "Replace the file or remove the entry."
            ) from exc


def _load_entries(path: Path) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise CalibrationDataError(f"calibration file {path} does not exist.") from exc
    if path.suffix == ".jsonl":
        entries = []
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise CalibrationDataError(f"{path}, line {line_no}: not valid JSON ({exc.msg}).") from exc
        return entries
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CalibrationDataError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}). Expected a list of "
            '{"id", "image", "conversations"} entries (ShareGPT4V format).'
        ) from exc
    if not isinstance(data, list):
        raise CalibrationDataError(
            f"{path}: the top level must be a JSON list of entries, found {type(data).__name__}."
        )
    return data


def _entry_name(entry: Any, index: int) -> str:
    if isinstance(entry, dict) and "id" in entry:
        return f"entry {index} (id {entry['id']!r})"
    return f"entry {index}"


def parse_conversation_entry(entry: Any, index: int, image_root: Path, source: Path) -> ConversationRecord:
    """Validate one ShareGPT4V entry; a malformed one raises an error naming it and what is wrong."""
    name = f"{source}: {_entry_name(entry, index)}"
    if not isinstance(entry, dict):
        raise CalibrationDataError(f"{name} is a {type(entry).__name__}, expected an object.")
    image = entry.get("image")
    if not isinstance(image, str) or not image:
        raise CalibrationDataError(f'{name} has no "image" path; every caption / OCR sample needs one.')
    turns = entry.get("conversations")
    if not isinstance(turns, list) or len(turns) < 2:
        raise CalibrationDataError(f'{name}: "conversations" must be a list with a human turn and a gpt turn.')
    first, second = turns[0], turns[1]
    if not (isinstance(first, dict) and isinstance(second, dict)):
        raise CalibrationDataError(f'{name}: each turn must be an object with "from" and "value".')
    if first.get("from") not in HUMAN_ROLES or second.get("from") not in ANSWER_ROLES:
        raise CalibrationDataError(
            f'{name}: the first two turns must be from "human" then "gpt", found '
            f"{first.get('from')!r} then {second.get('from')!r}."
        )
    prompt, answer = first.get("value"), second.get("value")
    if not isinstance(prompt, str) or not isinstance(answer, str) or not answer.strip():
        raise CalibrationDataError(f'{name}: the human and gpt "value" fields must be strings, the answer non-empty.')
    prompt = prompt.replace(IMAGE_TAG, "").strip()
    sample_id = str(entry.get("id", index))
    return ConversationRecord(sample_id, image_root / image, prompt, answer.strip())


def check_sample_count(available: int, requested: int, source: Path, unit: str, fix: str) -> None:
    """Raise unless ``0 < requested <= available``, saying how many were found and how to fix it."""
    if requested < 1:
        raise CalibrationSizeError(f"n_samples must be at least 1, got {requested}.")
    if available < requested:
        raise CalibrationSizeError(
            f"{source} has {available} {unit}, but n_samples={requested} were requested. "
            f"Pass n_samples<={available}" + (f" or {fix}." if fix else ".")
        )


def read_conversations(
    path: Path, *, n_samples: int, seed: int, image_root: Path | None = None
) -> list[ConversationRecord]:
    """Sample ``n_samples`` entries with ``seed`` and validate them (all entries must parse)."""
    root = image_root if image_root is not None else path.parent
    entries = _load_entries(path)
    records = [parse_conversation_entry(entry, i, root, path) for i, entry in enumerate(entries)]
    check_sample_count(len(records), n_samples, path, "samples", "use a larger calibration file")
    chosen = random.Random(seed).sample(range(len(records)), n_samples)
    return [records[i] for i in chosen]


def read_passages(path: Path) -> list[str]:
    """Plain-text passages: ``.jsonl`` lines with a "text" field, or ``.txt`` split on blank lines."""
    if path.suffix == ".jsonl":
        passages = []
        for index, entry in enumerate(_load_entries(path)):
            text = entry.get("text") if isinstance(entry, dict) else None
            if not isinstance(text, str):
                raise CalibrationDataError(f'{path}: {_entry_name(entry, index)} has no string "text" field.')
            passages.append(text)
    else:
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise CalibrationDataError(f"calibration file {path} does not exist.") from exc
        except UnicodeDecodeError as exc:
            raise CalibrationDataError(f"{path} is not UTF-8 text ({exc.reason}).") from exc
        passages = raw.split("\n\n")
    return [p.strip() for p in passages if p.strip()]
