"""The synthetic generator writes the real on-disk formats, deterministically, with true captions."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from qigbench.data.records import read_conversations, read_passages
from qigbench.data.synthetic import SyntheticDataError, write_caption_set, write_text_set


def _digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize("kind", ["caption", "ocr"])
def test_caption_set_is_sharegpt4v_shaped(tmp_path: Path, kind: str) -> None:
    path = write_caption_set(tmp_path, 12, seed=3, kind=kind, image_size=48)  # type: ignore[arg-type]
    entries = json.loads(path.read_text())
    assert len(entries) == 12
    for entry in entries:
        assert set(entry) == {"id", "image", "conversations"}
        human, gpt = entry["conversations"]
        assert human["from"] == "human" and human["value"].startswith("<image>\n")
        assert gpt["from"] == "gpt" and gpt["value"]
        with Image.open(tmp_path / entry["image"]) as image:
            assert image.size == (48, 48) and image.format == "PNG"
    records = read_conversations(path, n_samples=12, seed=0)
    assert all("<image>" not in r.prompt for r in records)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    write_caption_set(a, 6, seed=1)
    write_caption_set(b, 6, seed=1)
    write_caption_set(c, 6, seed=2)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_ocr_answers_are_in_the_question_domain(tmp_path: Path) -> None:
    entries = json.loads(write_caption_set(tmp_path, 30, seed=0, kind="ocr").read_text())
    for entry in entries:
        question, answer = (t["value"] for t in entry["conversations"])
        if "number" in question or "value of bar" in question:
            assert answer.isdigit()
        else:
            assert "word" in question and answer.isalpha()


def test_bar_chart_caption_names_the_tallest_bar(tmp_path: Path) -> None:
    entries = json.loads(write_caption_set(tmp_path, 40, seed=5).read_text())
    charts = [e["conversations"][1]["value"] for e in entries if e["conversations"][1]["value"].startswith("A bar")]
    assert charts
    for caption in charts:
        pairs = caption.split(": ", 1)[1].split(". ")[0]
        values = {p.split(" is ")[0]: int(p.split(" is ")[1]) for p in pairs.split(", ")}
        tallest = {k for k, v in values.items() if v == max(values.values())}
        named = caption.rsplit(". ", 1)[1].replace("Bars ", "").replace("Bar ", "")
        assert set(named.split(" are")[0].split(" is")[0].split(" and ")) == tallest


def test_text_set(tmp_path: Path) -> None:
    path = write_text_set(tmp_path, 5, seed=0)
    passages = read_passages(path)
    assert len(passages) == 5 and all(p.endswith(".") for p in passages)
    assert write_text_set(tmp_path / "again", 5, seed=0).read_bytes() == path.read_bytes()


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(SyntheticDataError, match="kind"):
        write_caption_set(tmp_path, 2, 0, kind="video")  # type: ignore[arg-type]
    with pytest.raises(SyntheticDataError, match="n >= 1"):
        write_caption_set(tmp_path, 0, 0)
