"""The one entry point: ``load_calibration(source, model=...) -> CalibrationSet``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from qigbench.cache import file_sha256
from qigbench.data.batch import CalibrationKind, CalibrationSet, chunked
from qigbench.data.conversation import conversation_batch
from qigbench.data.limits import position_limit, resolve_max_length
from qigbench.data.records import CalibrationDataError, read_conversations
from qigbench.data.text import text_batches, text_chunks

if TYPE_CHECKING:
    from qigbench.models.loading import LoadedModel

log = logging.getLogger(__name__)
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
      and processor; ``max_length`` (default: the model's ``max_position_embeddings``) truncates
      answers only (a warning counts the cut samples); ``image_root`` defaults to the JSON file's folder.
    - text: ``.txt`` / ``.jsonl`` passages cut into chunks of ``max_length`` tokens (default 512,
      or the model's limit when that is shorter).

    ``max_length`` past the model's ``max_position_embeddings`` is refused.

    The paper's setting is 128 caption pairs sampled with a fixed seed (the default here).
    """
    path, resolved = resolve_source(source, kind)
    limit = position_limit(getattr(model.model, "config", None))
    name = str(getattr(model, "source", None) or "the model").split(" -> ")[0]
    requested, max_length = max_length, resolve_max_length(max_length, limit, name)
    if resolved == "text":
        length = requested if requested is not None else min(DEFAULT_TEXT_LENGTH, limit or DEFAULT_TEXT_LENGTH)
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
        cut: list[str] = []
        batches = [
            conversation_batch(group, loaded=model, max_length=max_length, limit=limit, truncated=cut)
            for group in chunked(records, batch_size)
        ]
        if cut:
            why = f"{name}'s max_position_embeddings; --max-length sets less" if requested is None else "--max-length"
            log.warning(
                "calibration: the answers of %d of %d samples were cut to fit %d tokens (%s): %s%s",
                len(cut), len(records), max_length, why, ", ".join(cut[:3]), ", ..." if len(cut) > 3 else "",
            )
    return CalibrationSet(
        batches=tuple(batches),
        source=str(path),
        kind=resolved,
        n_samples=n_samples,
        seed=seed,
        sha256=file_sha256(path),
        max_length=max_length if resolved != "text" else length,
        sample_ids=tuple(i for b in batches for i in b.sample_ids),
    )
