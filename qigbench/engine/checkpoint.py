"""Resumable calibration: every finished unit of work (one block, or the span of blocks a method
asks for) is on disk before the next one starts.

Layout of a resume directory::

    manifest.json           fingerprint of the run + per-block stats, rewritten after each block
    method.safetensors      what the method's prepare() computed (e.g. MBQ ratios)
    block_0000.safetensors  the quantized block's full state (QuantLinear weights, scaled norms)
    streams.safetensors     the propagated hidden states entering the next unit (latest only)

Files are written to a temporary name and renamed, so a run killed mid-write leaves the last
complete state. A directory written by a different configuration is refused, not mixed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from qigbench.errors import QigbenchError


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
    block_stats: list[dict[str, Any]] = field(default_factory=list)
    #: calibration seconds up to the last saved block, over every run that wrote this directory
    elapsed_seconds: float = 0.0

    @property
    def manifest_path(self) -> Path:
        return self.directory / "manifest.json"

    def open(self) -> ResumeState | None:
        """Create the directory, or return the state to resume from (None: start fresh)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.manifest_path.exists():
            self._write_manifest(0)
            return None
        manifest = json.loads(self.manifest_path.read_text())
        if manifest["fingerprint"] != _jsonable(self.fingerprint):
            theirs, ours = manifest["fingerprint"], _jsonable(self.fingerprint)
            differ = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
            raise QigbenchError(
                f"resume directory {self.directory} belongs to a different configuration "
                f"({theirs.get('method')}/{theirs.get('format')}; differs in: {', '.join(differ)}); "
                "use another --resume-dir or delete it to start over"
            )
        next_block = int(manifest["next_block"])
        self.block_stats = list(manifest["blocks"])
        if next_block == 0:
            return None
        streams = load_file(str(self.directory / "streams.safetensors"))
        n_fp = sum(1 for k in streams if k.startswith("fp."))
        n_q = sum(1 for k in streams if k.startswith("q."))
        self.elapsed_seconds = float(manifest.get("elapsed_seconds", 0.0))
        return ResumeState(
            next_block=next_block,
            block_stats=self.block_stats,
            fp_stream=[streams[f"fp.{i}"] for i in range(n_fp)],
            q_stream=[streams[f"q.{i}"] for i in range(n_q)] if n_q else None,
            elapsed_seconds=self.elapsed_seconds,
        )

    def save_method_state(self, state: dict[str, torch.Tensor]) -> None:
        if state:
            _atomic_save({k: v.contiguous().cpu() for k, v in state.items()}, self.directory / "method.safetensors")

    def load_method_state(self) -> dict[str, torch.Tensor] | None:
        path = self.directory / "method.safetensors"
        return load_file(str(path)) if path.exists() else None

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
        """Persist the blocks ``start, start + 1, ...`` of one unit and the streams leaving it; the
        manifest, written last, then says the run continues at the next unit.
        ``elapsed_seconds`` = total calibration time so far (all runs)."""
        if len(block_states) != len(stats) or not block_states:
            raise ValueError(f"a unit saves one state and one stats entry per block: {len(block_states)}, {len(stats)}")
        if elapsed_seconds is not None:
            self.elapsed_seconds = elapsed_seconds
        for offset, state in enumerate(block_states):
            _atomic_save({k: v.detach().contiguous().cpu() for k, v in state.items()}, self.block_path(start + offset))
        tensors = {f"fp.{i}": t.contiguous().cpu() for i, t in enumerate(fp_stream)}
        if q_stream is not None:
            tensors.update({f"q.{i}": t.contiguous().cpu() for i, t in enumerate(q_stream)})
        _atomic_save(tensors, self.directory / "streams.safetensors")
        self.block_stats.extend(stats)
        self._write_manifest(start + len(block_states))

    def block_path(self, index: int) -> Path:
        return self.directory / f"block_{index:04d}.safetensors"

    def load_block(self, index: int) -> dict[str, torch.Tensor]:
        return load_file(str(self.block_path(index)))

    def _write_manifest(self, next_block: int) -> None:
        payload = {
            "fingerprint": _jsonable(self.fingerprint),
            "next_block": next_block,
            "blocks": self.block_stats,
            "elapsed_seconds": self.elapsed_seconds,
        }
        tmp = self.manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=1, default=str))
        os.replace(tmp, self.manifest_path)


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str, sort_keys=True))
