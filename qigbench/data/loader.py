"""The one entry point: ``load_calibration(source, model=...) -> CalibrationSet``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from qigbench.cache import file_sha256
from qigbench.data.batch import CalibrationKind, CalibrationSet, chunked
from qigbench.data.conversation import conversation_batch
from qigbench.data.records import CalibrationDataError, read_conversations
from qigbench.data.text import text_batches, text_chunks

if TYPE_CHECKING:
    from qigbench.models.loading import LoadedModel

KindArg = Literal["auto", "caption", "ocr", "text"]
DEFAULT_TEXT_LENGTH = 512
#: file names the synthetic generator writes; a directory source is resolved to one of them
KNOWN_FILES: dict[str, CalibrationKind] = {"caption.json": "caption", "ocr.json": "ocr", "text.jsonl": "text"}


def resolve_source(source: str | Path, kind: KindArg) -> tuple[Path, CalibrationKind]:
    """The calibration file and its kind (``auto``: from the file name or its first entry)."""
    path = Path(source).expanduser()
    if path.is_dir():
        found = [path / name for name, k in KNOWN_FILES.items() if (path / name).is_file() and kind in ("auto", k)]
        if len(found) != 1:
            raise CalibrationDataError(
                f"{path} is a directory; expected exactly one of {sorted(KNOWN_FILES)} in it"
                f"{'' if kind == 'auto' else f' for kind={kind!r}'}, found {len(found)}. Pass the file path instead."
            )
        path = found[0]
    if not path.is_file():
        raise CalibrationDataError(
            f"calibration source {path} does not exist. Pass a ShareGPT4V-style .json, a .jsonl or .txt "
            "text file, or build an offline set with qigbench.data.default_calibration(...)."
        )
    if kind != "auto":
        return path, kind
    if path.name in KNOWN_FILES:
        return path, KNOWN_FILES[path.name]
    if path.suffix == ".txt":
        return path, "text"
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as handle:
            first = next((line for line in handle if line.strip()), "{}")
        try:
            entry = json.loads(first)
        except json.JSONDecodeError as exc:
            raise CalibrationDataError(f"{path}, first entry: not valid JSON ({exc.msg}).") from exc
        return path, "caption" if isinstance(entry, dict) and "conversations" in entry else "text"
    return path, "caption"


def load_calibration(
    source: str | Path,
    *,
    model: LoadedModel,
    n_samples: int = 128,
    seed: int = 0,
    batch_size: int = 1,
    kind: KindArg = "auto",
    max_length: int | None = None,
    image_root: str | Path | None = None,
) -> CalibrationSet:
    """Sample, format and batch a calibration set for ``model`` (a ``qigbench.models.loading.LoadedModel``).

    - caption / ocr: ShareGPT4V-style JSON; each pair is formatted with the model's chat template
      and processor; ``max_length`` (default: none) truncates answers only; ``image_root``
      defaults to the JSON file's folder.
    - text: ``.txt`` / ``.jsonl`` passages cut into chunks of ``max_length`` tokens (default 512).

    The paper's setting is 128 caption pairs sampled with a fixed seed (the default here).
    """
    path, resolved = resolve_source(source, kind)
    if resolved == "text":
        length = max_length if max_length is not None else DEFAULT_TEXT_LENGTH
        chunks = text_chunks(path, tokenizer=model.tokenizer, n_samples=n_samples, seed=seed, max_length=length)
        batches = text_batches(chunks, loaded=model, batch_size=batch_size)
    else:
        if not getattr(model.family, "multimodal", True) or model.processor is None:
            raise CalibrationDataError(
                f"{path} is an image {resolved} set, but the model ({getattr(model.family, 'name', '?')}) is "
                "text-only. Use a text set (kind='text') for language models."
            )
        root = Path(image_root).expanduser() if image_root is not None else None
        records = read_conversations(path, n_samples=n_samples, seed=seed, image_root=root)
        batches = [
            conversation_batch(group, loaded=model, max_length=max_length) for group in chunked(records, batch_size)
        ]
    return CalibrationSet(
        batches=tuple(batches),
        source=str(path),
        kind=resolved,
        n_samples=n_samples,
        seed=seed,
        sha256=file_sha256(path),
        max_length=max_length if resolved != "text" else (max_length or DEFAULT_TEXT_LENGTH),
        sample_ids=tuple(i for b in batches for i in b.sample_ids),
    )
