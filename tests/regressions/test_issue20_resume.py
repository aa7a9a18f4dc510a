"""Issue 20, item 1: a run killed at any write of its resume directory resumes to exactly the model an
uninterrupted run gives, or refuses with a message; it never continues on the wrong inputs.

Before the fix, ``streams.safetensors`` (the latest hidden states, not keyed by block) was renamed into
place before ``manifest.json``: a kill between the two resumed block k on the outputs of block k and
the run exited 0 with other weights.

The fault injector counts every file write, rename and removal the checkpoint makes (through the
names ``qigbench.engine.checkpoint`` uses: ``save_file``, ``os.replace``, ``Path.write_text``,
``Path.unlink``) and kills the run at the k-th one, for every k of a run: a write dies half-way
(a truncated file is left), a rename or removal dies right after it. The uninterrupted reference
runs once per method.
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import qigbench.engine.checkpoint as checkpoint
from qigbench.data.batch import CalibrationBatch
from qigbench.engine.contracts import WorkUnit, spans_of
from qigbench.engine.method import Method, get_method
from qigbench.engine.run import EngineConfig, calibrate
from qigbench.errors import QigbenchError
from qigbench.models.registry import family_for
from qigbench.models.tiny import ensure_tiny
from qigbench.quant import parse_format
from qigbench.tokens import TokenType

TEXTS = ["the red square sits left of the blue circle", "three green triangles and one yellow star",
         "a bar chart with five bars rising", "digits 4 7 1 written in black"]
FORMAT = "W3A16"


class Killed(BaseException):
    """The process died here (a BaseException: nothing in the engine catches it)."""


class _Os:
    """``os`` as the checkpoint module sees it, with ``replace`` / ``remove`` counted."""

    def __init__(self, disk: Disk) -> None:
        self._disk = disk

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def replace(self, src: Any, dst: Any) -> None:
        os.replace(src, dst)
        self._disk.step("rename", Path(dst))

    def remove(self, path: Any) -> None:
        os.remove(path)
        self._disk.step("remove", Path(path))


class Disk:
    """Counts the checkpoint's file operations under ``root``; kills the run at operation ``kill_at``."""

    def __init__(self, root: Path, kill_at: int | None = None) -> None:
        self.root, self.kill_at = root.resolve(), kill_at
        self.ops: list[tuple[str, str]] = []

    def mine(self, path: Path) -> bool:
        return Path(path).resolve().is_relative_to(self.root)

    def step(self, op: str, path: Path, undo: Any = None) -> None:
        self.ops.append((op, Path(path).name))
        if self.kill_at is not None and len(self.ops) - 1 == self.kill_at:
            if undo is not None:
                undo()
            raise Killed(f"killed at {op} {Path(path).name}")

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real_save, real_write, real_unlink = checkpoint.save_file, pathlib.Path.write_text, pathlib.Path.unlink
        disk = self

        def truncate(path: Path) -> Any:
            return lambda: os.truncate(path, os.path.getsize(path) // 2)  # died half-way through the write

        def save_file(tensors: Any, filename: Any, metadata: Any = None) -> None:
            real_save(tensors, filename, metadata)
            disk.step("write", Path(filename), truncate(Path(filename)))

        def write_text(self: pathlib.Path, data: str, *args: Any, **kwargs: Any) -> int:
            n = real_write(self, data, *args, **kwargs)
            if disk.mine(self):
                disk.step("write", self, truncate(self))
            return n

        def unlink(self: pathlib.Path, missing_ok: bool = False) -> None:
            real_unlink(self, missing_ok=missing_ok)
            if disk.mine(self):
                disk.step("remove", self)

        monkeypatch.setattr(checkpoint, "save_file", save_file)
        monkeypatch.setattr(checkpoint, "os", _Os(self))
        monkeypatch.setattr(pathlib.Path, "write_text", write_text)
        monkeypatch.setattr(pathlib.Path, "unlink", unlink)


class SpanMBQ:
    """MBQ (method state from prepare: its gradient ratios) calibrated in spans of two blocks."""

    @staticmethod
    def build() -> Method[Any]:
        base = type(get_method("mbq"))

        class _Span(base):  # type: ignore[misc, valid-type]
            def units(self, n_blocks: int) -> Sequence[WorkUnit]:
                return spans_of(n_blocks, 2)

        return _Span(get_method("mbq", CHEAP).config)  # type: ignore[no-any-return]


#: a coarse scale grid and few IG steps: what the kills test does not depend on the defaults' cost
CHEAP = {"n_grid": "4"}
METHODS = {"qig": lambda: get_method("qig", {**CHEAP, "qig.steps": "2"}), "span-mbq": SpanMBQ.build}


@pytest.fixture(scope="module")
def llama(cache_dir: Path) -> tuple[torch.nn.Module, list[CalibrationBatch]]:
    """The fp model (each run quantizes a copy) and two batches of two prompts."""
    path = ensure_tiny("tiny-llama", cache_dir)
    tok = AutoTokenizer.from_pretrained(path)
    tok.pad_token = tok.pad_token or tok.eos_token
    batches = []
    for i in range(0, len(TEXTS), 2):
        enc = tok(TEXTS[i : i + 2], return_tensors="pt", padding=True)
        mask = enc["attention_mask"].bool()
        types = torch.where(mask, int(TokenType.TEXT), int(TokenType.PAD))
        batches.append(CalibrationBatch(dict(enc), types, mask, torch.where(mask, enc["input_ids"], -100)))
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval(), batches


Llama = tuple[torch.nn.Module, list[CalibrationBatch]]


def _calibrate(llama: Llama, method: str, resume: Path) -> tuple[dict[str, torch.Tensor], list[float], int]:
    fp, batches = llama
    model = copy.deepcopy(fp)
    report = calibrate(model, family_for(model), batches, METHODS[method](), parse_format(FORMAT),
                       EngineConfig(progress=False, resume_dir=resume), {"test": "issue20"})
    return model.state_dict(), [b["rel_error"] for b in report.blocks], report.resumed_from_block


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_kill_at_every_write_resumes_bit_for_bit_or_refuses(
    method: str, llama: Llama, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.set_num_threads(1)
    counting = Disk(tmp_path / "reference")
    with monkeypatch.context() as patch:
        counting.install(patch)
        weights, errors, _ = _calibrate(llama, method, tmp_path / "reference")
    writes = [name for op, name in counting.ops if op == "write"]
    assert any(n.startswith("block_") for n in writes) and any(n.startswith("manifest") for n in writes)
    if method == "span-mbq":
        assert any(n.startswith("method") for n in writes)  # the method state is one of the boundaries

    differ, refused, resumed_at = [], [], set()
    for k, (op, name) in enumerate(counting.ops):
        resume = tmp_path / f"kill-{k}"
        disk = Disk(resume, kill_at=k)
        with monkeypatch.context() as patch, pytest.raises(Killed):
            disk.install(patch)
            _calibrate(llama, method, resume)
        try:
            got, got_errors, resumed_from = _calibrate(llama, method, resume)
        except QigbenchError as err:
            assert str(resume) in str(err) and "delete it" in str(err)
            refused.append(f"{k} {op} {name}")
            continue
        resumed_at.add(resumed_from)
        same = got_errors == errors and all(torch.equal(v, got[key]) for key, v in weights.items())
        if not same:
            differ.append(f"kill after op {k} ({op} {name}): resumed at block {resumed_from}, errors {got_errors}")
    assert not differ, "a resumed run silently differs from the uninterrupted one:\n" + "\n".join(differ)
    assert not refused, f"a kill at a write boundary left a directory that cannot be resumed: {refused}"
    assert len(resumed_at - {0}) >= 1  # the kills did land after finished units, and those resumed


def test_a_directory_whose_files_do_not_check_out_is_refused_with_a_message(
    llama: Llama, tmp_path: Path
) -> None:
    resume = tmp_path / "r"
    _calibrate(llama, "qig", resume)
    manifest = json.loads((resume / "manifest.json").read_text())
    manifest["next_block"], manifest["blocks"] = 1, manifest["blocks"][:1]  # as if killed after block 0
    manifest["streams"] = "streams_0001.safetensors"
    (resume / "manifest.json").write_text(json.dumps(manifest))
    # the states entering block 1 are gone (a foreign tool, a partial copy): refused, never guessed
    for streams in resume.glob("streams*"):
        streams.unlink()
    with pytest.raises(QigbenchError, match=r"cannot be resumed: .*entering block 1.* missing; delete it"):
        _calibrate(llama, "qig", resume)


def test_a_directory_of_the_unkeyed_layout_is_refused(llama: Llama, tmp_path: Path) -> None:
    resume = tmp_path / "old"
    _calibrate(llama, "qig", resume)
    manifest = json.loads((resume / "manifest.json").read_text())
    manifest["next_block"], manifest["blocks"] = 2, manifest["blocks"][:2]
    for key in ("layout", "streams", "method_state"):
        manifest.pop(key, None)
    (resume / "manifest.json").write_text(json.dumps(manifest))
    for streams in resume.glob("streams*"):
        streams.rename(resume / "streams.safetensors")  # what the old layout kept
    with pytest.raises(QigbenchError, match=r"older qigbench.*not keyed by block.*delete it to start over"):
        _calibrate(llama, "qig", resume)
