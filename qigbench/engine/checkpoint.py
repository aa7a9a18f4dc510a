"""Resumable calibration: every finished unit of work (one block, or the span of blocks a method
asks for) is on disk before the next one starts.

Layout of a resume directory::

    manifest.json             the commit point: fingerprint, next block, per-block stats, and the
                              names of the files below that belong to the state it describes
    method.safetensors        what the method's prepare() computed (e.g. MBQ ratios)
    block_0000.safetensors    the quantized block's full state (QuantLinear weights, scaled norms)
    streams_0003.safetensors  the propagated hidden states *entering block 3* (keyed by that block)

Crash safety (a kill at any write, tested at every one in
``tests/regressions/test_issue20_resume.py``):

* every file is written to a temporary name, synced and renamed, so a file is whole or absent;
* the manifest, renamed into place last, is the one commit of a unit: the state is exactly what the
  manifest on disk names. A file it does not name (a block of the unit that was being saved, the
  streams leaving it, a half-written ``*.tmp``) is never read, and a file it names is never
  overwritten: the streams are keyed by the block they enter, so the unit's new streams file and
  the previous one both exist until the new manifest is in place; only then is the superseded one
  removed (or, after a kill, at the next open);
* on resume every named file is checked (present, streams keyed by the manifest's next block); what
  does not check out is refused with a message naming the fix, never used.

A directory written by a different configuration is refused, not mixed. ``writes=False`` opens a
directory to resume from without ever writing it (every rank but 0 of a data-parallel run).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from qigbench.errors import QigbenchError

#: manifest layout; 1 (no "layout" key) kept one unkeyed ``streams.safetensors`` that a kill could
#: leave one unit ahead of the manifest, so such a directory is refused rather than trusted
LAYOUT = 2
MANIFEST = "manifest.json"
METHOD_STATE = "method.safetensors"


@dataclass
class ResumeState:
    next_block: int
    block_stats: list[dict[str, Any]]
    fp_stream: list[torch.Tensor]
    q_stream: list[torch.Tensor] | None
    #: calibration seconds spent by the earlier run(s) up to the last finished block
    elapsed_seconds: float = 0.0


@dataclass
class Checkpoint:
    directory: Path
    fingerprint: dict[str, Any]
    #: False: read the directory to resume from, never write it (all ranks but 0 of a data-parallel run)
    writes: bool = True
    block_stats: list[dict[str, Any]] = field(default_factory=list)
    #: calibration seconds up to the last saved block, over every run that wrote this directory
    elapsed_seconds: float = 0.0
    #: the files the manifest on disk names (None: none yet)
    _streams: str | None = field(default=None, init=False, repr=False)
    _method_state: str | None = field(default=None, init=False, repr=False)
    _next_block: int = field(default=0, init=False, repr=False)

    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST

    # -- opening ------------------------------------------------------------------------------
    def open(self) -> ResumeState | None:
        """Create the directory, or return the state to resume from (None: start fresh)."""
        if self.writes:
            self.directory.mkdir(parents=True, exist_ok=True)
        if not self.manifest_path.exists():
            self._commit()
            return None
        manifest = self._read_manifest()
        next_block = int(manifest["next_block"])
        if manifest.get("layout") != LAYOUT:
            if next_block > 0:
                self._refuse(
                    "was written by an older qigbench whose hidden-state file is not keyed by block (a kill could "
                    "leave it one unit ahead of the manifest), so it cannot be checked"
                )
            self._commit()  # nothing finished yet: start over in the current layout
            return None
        blocks = list(manifest["blocks"])
        if len(blocks) != next_block:
            self._refuse(f"its manifest lists {len(blocks)} finished blocks but continues at block {next_block}")
        self.block_stats, self._next_block = blocks, next_block
        self._method_state = manifest.get("method_state")
        self._streams = manifest.get("streams")
        self.elapsed_seconds = float(manifest.get("elapsed_seconds", 0.0))
        if self._method_state is not None and not (self.directory / self._method_state).is_file():
            self._refuse(f"{self._method_state}, which its manifest names, is missing")
        self._remove_unnamed()
        if next_block == 0:
            return None
        for i in range(next_block):
            if not self.block_path(i).is_file():
                self._refuse(f"{self.block_path(i).name}, a finished block its manifest names, is missing")
        fp, q = self._load_streams(next_block)
        return ResumeState(next_block, self.block_stats, fp, q, self.elapsed_seconds)

    def _read_manifest(self) -> dict[str, Any]:
        try:
            manifest = json.loads(self.manifest_path.read_text())
            theirs = manifest["fingerprint"]
            int(manifest["next_block"]), list(manifest["blocks"])
        except (ValueError, KeyError, TypeError) as err:
            self._refuse(f"its {MANIFEST} is not readable ({type(err).__name__}: {err})")
        ours = _jsonable(self.fingerprint)
        if theirs != ours:
            differ = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
            raise QigbenchError(
                f"resume directory {self.directory} belongs to a different configuration "
                f"({theirs.get('method')}/{theirs.get('format')}; differs in: {', '.join(differ)}); "
                "use another --resume-dir or delete it to start over"
            )
        return manifest  # type: ignore[no-any-return]

    def _load_streams(self, next_block: int) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        name = self._streams
        if name != _streams_name(next_block):
            self._refuse(f"its manifest continues at block {next_block} but names the hidden states {name!r}")
        path = self.directory / name
        if not path.is_file():
            self._refuse(f"{name}, the hidden states entering block {next_block}, is missing")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            streams = load_file(str(path))
        except (SafetensorError, OSError) as err:
            self._refuse(f"{name} is not readable ({err})")
        if meta.get("enters_block") != str(next_block):
            self._refuse(f"{name} holds the states entering block {meta.get('enters_block')}, not {next_block}")
        n_fp, n_q = int(meta.get("fp", 0)), int(meta.get("q", 0))
        fp = [streams[f"fp.{i}"] for i in range(n_fp)]
        q = [streams[f"q.{i}"] for i in range(n_q)] if n_q else None
        return fp, q

    def _refuse(self, why: str) -> NoReturn:
        raise QigbenchError(
            f"resume directory {self.directory} cannot be resumed: {why}; delete it to start over (or use another "
            "--resume-dir)"
        )

    # -- method state -------------------------------------------------------------------------
    def save_method_state(self, state: dict[str, torch.Tensor]) -> None:
        if not state or not self.writes:
            return
        _atomic_save({k: v.contiguous().cpu() for k, v in state.items()}, self.directory / METHOD_STATE)
        self._method_state = METHOD_STATE
        self._commit()

    def load_method_state(self) -> dict[str, torch.Tensor] | None:
        """What the manifest's run saved of the method's ``prepare`` (None: prepare again)."""
        if self._method_state is None:
            return None
        return load_file(str(self.directory / self._method_state))

    # -- blocks -------------------------------------------------------------------------------
    def save_block(
        self,
        index: int,
        block_state: dict[str, torch.Tensor],
        stats: dict[str, Any],
        fp_stream: list[torch.Tensor],
        q_stream: list[torch.Tensor] | None,
        elapsed_seconds: float | None = None,
    ) -> None:
        """Persist block ``index`` (a unit of one block); see :meth:`save_unit`."""
        self.save_unit(index, [block_state], [stats], fp_stream, q_stream, elapsed_seconds)

    def save_unit(
        self,
        start: int,
        block_states: list[dict[str, torch.Tensor]],
        stats: list[dict[str, Any]],
        fp_stream: list[torch.Tensor],
        q_stream: list[torch.Tensor] | None,
        elapsed_seconds: float | None = None,
    ) -> None:
        """Persist the blocks ``start, start + 1, ...`` of one unit and the streams leaving it (keyed
        by the block they enter); the manifest, renamed into place last, commits them all at once.
        ``elapsed_seconds`` = total calibration time so far (all runs)."""
        if len(block_states) != len(stats) or not block_states:
            raise ValueError(f"a unit saves one state and one stats entry per block: {len(block_states)}, {len(stats)}")
        if start != self._next_block:
            raise ValueError(f"the checkpoint continues at block {self._next_block}, not at {start}")
        stop = start + len(block_states)
        if elapsed_seconds is not None:
            self.elapsed_seconds = elapsed_seconds
        self.block_stats = [*self.block_stats, *stats]
        self._next_block = stop
        if not self.writes:
            return
        for offset, state in enumerate(block_states):
            _atomic_save({k: v.detach().contiguous().cpu() for k, v in state.items()}, self.block_path(start + offset))
        tensors = {f"fp.{i}": t.contiguous().cpu() for i, t in enumerate(fp_stream)}
        if q_stream is not None:
            tensors.update({f"q.{i}": t.contiguous().cpu() for i, t in enumerate(q_stream)})
        meta = {"enters_block": str(stop), "fp": str(len(fp_stream)), "q": str(len(q_stream or ()))}
        _atomic_save(tensors, self.directory / _streams_name(stop), meta)
        self._streams = _streams_name(stop)
        self._commit()
        self._remove_unnamed()

    def block_path(self, index: int) -> Path:
        return self.directory / f"block_{index:04d}.safetensors"

    def load_block(self, index: int) -> dict[str, torch.Tensor]:
        return load_file(str(self.block_path(index)))

    # -- writing ------------------------------------------------------------------------------
    def _commit(self) -> None:
        """Write the manifest: from now on the directory's state is what it names."""
        if not self.writes:
            return
        payload = {
            "layout": LAYOUT,
            "fingerprint": _jsonable(self.fingerprint),
            "next_block": self._next_block,
            "blocks": self.block_stats,
            "elapsed_seconds": self.elapsed_seconds,
            "streams": self._streams,
            "method_state": self._method_state,
        }
        tmp = self.directory / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(payload, indent=1, default=str))
        _fsync(tmp)
        os.replace(tmp, self.manifest_path)
        _fsync(self.directory)  # the rename itself survives a power loss too

    def _remove_unnamed(self) -> None:
        """Superseded streams files and half-written temporaries (left by a kill); never a named file."""
        if not self.writes:
            return
        for path in sorted(self.directory.glob("streams*.safetensors")) + sorted(self.directory.glob("*.tmp")):
            if path.name != self._streams:
                path.unlink(missing_ok=True)


def _streams_name(enters_block: int) -> str:
    return f"streams_{enters_block:04d}.safetensors"


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata)
    _fsync(tmp)
    os.replace(tmp, path)


def _fsync(path: Path) -> None:
    """Data on disk before the rename that publishes it (a kill needs no sync; a power loss does)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # a folder cannot be opened for syncing everywhere (Windows)
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str, sort_keys=True))
