"""Multi-device placement of one model: the decoder split into contiguous stages, one per device.

``--devices cuda:0,cuda:1,cuda:2,cuda:3`` (``EngineConfig.devices``) is what TLQ's paper runs on
(several 24 GB cards instead of one 80 GB card; q-vlm-and-tlq.md item 7, A14), offered to every
method: a placement policy, not a method. Each stage's blocks stay resident on their device for
the whole run (no block is offloaded and brought back), the propagation streams stay on the
device of the stage being calibrated and move once to the next stage's device when the loop
crosses a stage boundary, and the embeddings / vision tower / head live on the first device. The
pre-passes that run the whole model (MBQ's and TLQ's gradients, Q-VLM's sample-major pass) run it
pipelined over the same devices (:meth:`Placement.dispatched`: each block's inputs are moved to
its device, the last block's output back to the first).

It changes where numbers are computed, never which: on devices of one kind the result is the
single-device offload run's, bit for bit (tests/engine/test_placement.py, with ``cpu,cpu``).

Stages are cut at unit boundaries (a unit's blocks must share a device) so that the largest
stage holds as few parameter bytes as possible, the first device counting the modules outside
the decoder too (:func:`plan_stages`; :mod:`qigbench.cost.placement` predicts the memory of a
placement with the same plan).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from qigbench.engine.contracts import WorkUnit
from qigbench.engine.replay import map_tensors
from qigbench.errors import QigbenchError


class PlacementError(QigbenchError, ValueError):
    """A placement that cannot be made (fewer units than devices, an unknown device)."""


def parse_devices(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"cuda:0,cuda:1"`` -> ``("cuda:0", "cuda:1")``; checked by torch's device parser."""
    if text is None:
        return ()
    items = [p.strip() for p in (text.split(",") if isinstance(text, str) else text) if p.strip()]
    for item in items:
        try:
            torch.device(item)
        except (RuntimeError, TypeError):
            raise PlacementError(f"--devices: {item!r} is not a device; write e.g. --devices cuda:0,cuda:1") from None
    return tuple(items)


def plan_stages(unit_bytes: Sequence[int], n_devices: int, first_extra: int = 0) -> list[tuple[int, int]]:
    """Cut the units ``0 .. len(unit_bytes) - 1`` into ``n_devices`` contiguous, non-empty stages
    (``(first unit, stop unit)`` each): the largest stage as small as possible, and among the cuts
    that achieve it the most even one (smallest sum of squared stage sizes); the first stage also
    carries ``first_extra`` bytes (embeddings, vision tower, head)."""
    n = len(unit_bytes)
    if n_devices < 1:
        raise PlacementError("a placement needs at least one device")
    if n < n_devices:
        raise PlacementError(f"{n} units of work cannot be split over {n_devices} devices; use at most {n} devices")
    prefix = [0]
    for b in unit_bytes:
        prefix.append(prefix[-1] + int(b))

    def load(d: int, j: int, i: int) -> int:  # stage d (1-based) holding units j .. i - 1
        return prefix[i] - prefix[j] + (first_extra if d == 1 else 0)

    def solve(minimax: bool, limit: float) -> tuple[float, list[list[int]]]:
        """best[d][i] for the first i units on d devices: the largest stage (``minimax``), else the
        sum of squared stages with none above ``limit``."""
        inf = float("inf")
        best = [[inf] * (n + 1) for _ in range(n_devices + 1)]
        cut = [[0] * (n + 1) for _ in range(n_devices + 1)]
        best[0][0] = 0
        for d in range(1, n_devices + 1):
            for i in range(d, n - (n_devices - d) + 1):
                for j in range(d - 1, i):
                    stage = load(d, j, i)
                    if stage > limit or best[d - 1][j] == inf:
                        continue
                    value = max(best[d - 1][j], stage) if minimax else best[d - 1][j] + float(stage) ** 2
                    if value < best[d][i]:
                        best[d][i], cut[d][i] = value, j
        return best[n_devices][n], cut

    largest, _ = solve(True, float("inf"))  # the smallest possible largest stage
    _, cut = solve(False, largest)  # the most even cut that keeps it
    stages: list[tuple[int, int]] = []
    i = n
    for d in range(n_devices, 0, -1):
        j = cut[d][i]
        stages.append((j, i))
        i = j
    return stages[::-1]


def parameter_bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


@dataclass(frozen=True)
class Placement:
    """Which device holds which decoder blocks (``stages[k]``: blocks ``start .. stop - 1`` on ``devices[k]``)."""

    devices: tuple[str, ...]
    stages: tuple[tuple[int, int], ...]

    @classmethod
    def plan(cls, devices: Sequence[str], units: Sequence[WorkUnit], blocks: Sequence[nn.Module] | nn.ModuleList,
             outside_bytes: int = 0) -> Placement:
        sizes = [sum(parameter_bytes(blocks[i]) for i in u) for u in units]
        cuts = plan_stages(sizes, len(devices), outside_bytes)
        stages = tuple((units[a].start, units[b - 1].stop) for a, b in cuts)
        return cls(tuple(devices), stages)

    @property
    def first(self) -> str:
        return self.devices[0]

    def device_of(self, block: int) -> str:
        for device, (start, stop) in zip(self.devices, self.stages, strict=True):
            if start <= block < stop:
                return device
        raise IndexError(f"block {block} is in no stage of {self.stages}")

    def describe(self) -> list[dict[str, Any]]:
        return [{"device": d, "blocks": [a, b - 1]} for d, (a, b) in zip(self.devices, self.stages, strict=True)]

    def place_blocks(self, blocks: nn.ModuleList) -> None:
        """Every block onto its stage's device, once, for the whole run."""
        for i in range(len(blocks)):
            blocks[i] = blocks[i].to(self.device_of(i))

    @contextlib.contextmanager
    def dispatched(self, model: nn.Module, blocks: nn.ModuleList) -> Iterator[None]:
        """The whole model runnable across the devices (for the gradient / sample-major pre-passes):
        each block's inputs go to its device, the last block's output back to the first device.
        While inside, ``model.hf_device_map`` says where each block is, which is what tells those
        passes to leave the model where it is (as for a model loaded with a ``device_map``)."""
        handles = []
        for i, block in enumerate(blocks):
            device = self.device_of(i)

            def to_block(module: nn.Module, args: Any, kwargs: Any, device: str = device) -> Any:
                move = lambda t: t.to(device)  # noqa: E731
                return map_tensors(args, move), map_tensors(kwargs, move)

            handles.append(block.register_forward_pre_hook(to_block, with_kwargs=True))
        first = self.first

        def back(module: nn.Module, args: Any, out: Any) -> Any:
            return map_tensors(out, lambda t: t.to(first))

        handles.append(blocks[len(blocks) - 1].register_forward_hook(back))
        had = "hf_device_map" in vars(model)
        previous = getattr(model, "hf_device_map", None)
        object.__setattr__(model, "hf_device_map", {f"block.{i}": self.device_of(i) for i in range(len(blocks))})
        try:
            yield
        finally:
            for h in handles:
                h.remove()
            if had:
                object.__setattr__(model, "hf_device_map", previous)
            else:
                object.__delattr__(model, "hf_device_map")
