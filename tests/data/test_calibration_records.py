"""Reading ShareGPT4V-style files: seeded sampling and errors that name the entry / file / fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qigbench.data.records import (
    CalibrationDataError,
    CalibrationImageError,
    CalibrationSizeError,
    read_conversations,
    read_passages,
)
from qigbench.data.synthetic import write_caption_set
from qigbench.errors import QigbenchError


@pytest.fixture(scope="module")
def caption_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_caption_set(tmp_path_factory.mktemp("cap"), 20, seed=0, image_size=32)


def test_seeded_sampling_is_deterministic(caption_json: Path) -> None:
    ids = lambda seed: [r.sample_id for r in read_conversations(caption_json, n_samples=8, seed=seed)]  # noqa: E731
    assert ids(0) == ids(0)
    assert ids(0) != ids(1)
    assert len(set(ids(0))) == 8


def test_whole_set_is_a_permutation(caption_json: Path) -> None:
    records = read_conversations(caption_json, n_samples=20, seed=4)
    assert sorted(r.sample_id for r in records) == sorted(e["id"] for e in json.loads(caption_json.read_text()))


def test_image_root_override(caption_json: Path, tmp_path: Path) -> None:
    records = read_conversations(caption_json, n_samples=1, seed=0, image_root=tmp_path)
    assert records[0].image_path.parent.parent == tmp_path
    with pytest.raises(CalibrationImageError, match=r"does not exist.*image root"):
        records[0].load_image()


def _write(tmp_path: Path, entries: object) -> Path:
    path = tmp_path / "set.json"
    path.write_text(json.dumps(entries))
    return path


def _entry(i: int, image: str = "x.png") -> dict:
    return {
        "id": f"s{i}",
        "image": image,
        "conversations": [{"from": "human", "value": "<image>\nDescribe."}, {"from": "gpt", "value": "A cat."}],
    }


def test_missing_image_names_file_and_sample(tmp_path: Path) -> None:
    (record,) = read_conversations(_write(tmp_path, [_entry(7, "nowhere/img.png")]), n_samples=1, seed=0)
    with pytest.raises(CalibrationImageError) as info:
        record.load_image()
    assert "'s7'" in str(info.value) and "nowhere/img.png" in str(info.value)
    assert isinstance(info.value, QigbenchError)


def test_unreadable_image_names_file_and_sample(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"not a png")
    (record,) = read_conversations(_write(tmp_path, [_entry(3)]), n_samples=1, seed=0)
    with pytest.raises(CalibrationImageError, match=r"'s3'.*x\.png.*cannot be read"):
        record.load_image()


@pytest.mark.parametrize("found,requested", [(0, 128), (3, 4), (5, 0)])
def test_too_small_set_says_how_many_and_how_to_fix(tmp_path: Path, found: int, requested: int) -> None:
    path = _write(tmp_path, [_entry(i) for i in range(found)])
    with pytest.raises(CalibrationSizeError) as info:
        read_conversations(path, n_samples=requested, seed=0)
    message = str(info.value)
    if requested >= 1:
        assert f"has {found} samples" in message and f"n_samples<={found}" in message
    else:
        assert "at least 1" in message


@pytest.mark.parametrize(
    "bad,expected",
    [
        ({"id": "a", "conversations": []}, r"entry 1 \(id 'a'\) has no \"image\""),
        ({"id": "b", "image": "x.png"}, r"entry 1 \(id 'b'\).*conversations"),
        (
            {
                "id": "c",
                "image": "x.png",
                "conversations": [{"from": "gpt", "value": "A"}, {"from": "human", "value": "B"}],
            },
            r"entry 1 \(id 'c'\).*\"human\" then \"gpt\"",
        ),
        (
            {
                "id": "d",
                "image": "x.png",
                "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": " "}],
            },
            r"entry 1 \(id 'd'\).*non-empty",
        ),
        ("just a string", r"entry 1 is a str"),
    ],
)
def test_malformed_entry_is_named(tmp_path: Path, bad: object, expected: str) -> None:
    with pytest.raises(CalibrationDataError, match=expected):
        read_conversations(_write(tmp_path, [_entry(0), bad]), n_samples=1, seed=0)


def test_not_json_and_not_a_list(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("[{")
    with pytest.raises(CalibrationDataError, match="not valid JSON"):
        read_conversations(path, n_samples=1, seed=0)
    with pytest.raises(CalibrationDataError, match="JSON list"):
        read_conversations(_write(tmp_path, {"id": 1}), n_samples=1, seed=0)


def test_passages_from_txt_and_jsonl(tmp_path: Path) -> None:
    txt = tmp_path / "a.txt"
    txt.write_text("First passage.\nstill first.\n\n\nSecond passage.\n")
    assert read_passages(txt) == ["First passage.\nstill first.", "Second passage."]
    jsonl = tmp_path / "b.jsonl"
    jsonl.write_text('{"text": "one"}\n\n{"text": "two"}\n')
    assert read_passages(jsonl) == ["one", "two"]
    jsonl.write_text('{"text": "one"}\n{"body": "two"}\n')
    with pytest.raises(CalibrationDataError, match=r"entry 1 has no string \"text\""):
        read_passages(jsonl)
