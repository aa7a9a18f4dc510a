"""Checkpoint: atomic per-block state, refusal of foreign directories, elapsed time carried over."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from qigbench.engine.checkpoint import Checkpoint
from qigbench.errors import QigbenchError


def test_fresh_directory_then_resume_state(tmp_path: Path) -> None:
    ck = Checkpoint(tmp_path / "r", {"method": "rtn", "format": "W4A16"})
    assert ck.open() is None
    fp = [torch.randn(2, 3), torch.randn(1, 3)]
    ck.save_block(0, {"w": torch.ones(2)}, {"block": 0, "rel_error": 0.1}, fp, None, elapsed_seconds=4.5)
    again = Checkpoint(tmp_path / "r", {"method": "rtn", "format": "W4A16"})
    state = again.open()
    assert state is not None and state.next_block == 1 and state.q_stream is None
    assert state.elapsed_seconds == 4.5 and state.block_stats == [{"block": 0, "rel_error": 0.1}]
    assert all(torch.equal(a, b) for a, b in zip(state.fp_stream, fp, strict=True))
    assert torch.equal(again.load_block(0)["w"], torch.ones(2))
    assert not list((tmp_path / "r").glob("*.tmp"))  # every write renamed into place


def test_a_directory_of_another_configuration_names_what_differs(tmp_path: Path) -> None:
    Checkpoint(tmp_path, {"method": "rtn", "format": "W4A16", "dtype": ["torch.float32"]}).open()
    with pytest.raises(QigbenchError, match="differs in: dtype"):
        Checkpoint(tmp_path, {"method": "rtn", "format": "W4A16", "dtype": ["torch.bfloat16"]}).open()


def test_manifest_is_json_with_the_fingerprint(tmp_path: Path) -> None:
    ck = Checkpoint(tmp_path, {"method": "gptq", "options": (("damp", "0.01"),)})
    ck.open()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["fingerprint"]["method"] == "gptq" and manifest["next_block"] == 0


def test_a_unit_of_two_blocks_is_saved_as_a_whole(tmp_path: Path) -> None:
    ck = Checkpoint(tmp_path, {"method": "rtn"})
    ck.open()
    fp, q = [torch.randn(2, 3)], [torch.randn(2, 3)]
    ck.save_block(0, {"w": torch.zeros(1)}, {"block": 0}, fp, q)
    ck.save_unit(1, [{"w": torch.ones(1)}, {"w": 2 * torch.ones(1)}], [{"block": 1}, {"block": 2}], fp, q)
    state = Checkpoint(tmp_path, {"method": "rtn"}).open()
    assert state is not None and state.next_block == 3  # the run continues after the whole unit
    assert [s["block"] for s in state.block_stats] == [0, 1, 2]
    assert [float(ck.load_block(i)["w"]) for i in range(3)] == [0.0, 1.0, 2.0]
    assert state.q_stream is not None and torch.equal(state.q_stream[0], q[0])
    with pytest.raises(ValueError, match="one state and one stats entry per block"):
        ck.save_unit(3, [{"w": torch.ones(1)}], [], fp, q)


def test_a_reader_that_does_not_write_resumes_and_leaves_the_directory_alone(tmp_path: Path) -> None:
    """``writes=False`` (every rank but 0 of a data-parallel run): reads the state, writes nothing."""
    assert Checkpoint(tmp_path / "none", {"method": "rtn"}, writes=False).open() is None
    assert not (tmp_path / "none").exists()
    ck = Checkpoint(tmp_path / "r", {"method": "rtn"})
    ck.open()
    fp = [torch.randn(2, 3)]
    ck.save_block(0, {"w": torch.ones(2)}, {"block": 0}, fp, None)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "r").iterdir()}
    reader = Checkpoint(tmp_path / "r", {"method": "rtn"}, writes=False)
    state = reader.open()
    assert state is not None and state.next_block == 1 and torch.equal(state.fp_stream[0], fp[0])
    reader.save_method_state({"m": torch.ones(1)})
    reader.save_unit(1, [{"w": torch.zeros(2)}], [{"block": 1}], fp, None)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "r").iterdir()} == before
    assert [s["block"] for s in reader.block_stats] == [0, 1]  # it still follows the run in memory


def test_streams_are_keyed_by_the_block_they_enter(tmp_path: Path) -> None:
    ck = Checkpoint(tmp_path, {"method": "rtn"})
    ck.open()
    for i in range(2):
        ck.save_block(i, {"w": torch.ones(1)}, {"block": i}, [torch.full((1, 2), float(i))], None)
    assert sorted(p.name for p in tmp_path.glob("streams*")) == ["streams_0002.safetensors"]  # the superseded one went
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["streams"] == "streams_0002.safetensors" and manifest["next_block"] == 2
    with pytest.raises(ValueError, match="continues at block 2"):
        ck.save_block(3, {"w": torch.ones(1)}, {"block": 3}, [torch.ones(1, 2)], None)
