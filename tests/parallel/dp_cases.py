"""The configurations the data-parallel tests run, and what is compared between 1 and N ranks.

Shared by the torchrun driver (``dp_driver.py``, every case on 2 gloo ranks in one launch) and
the tests (the same cases in the test process, world size 1)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

#: 6 samples in batches of 2: 3 batches, so rank 0 holds one and rank 1 two (an uneven split)
SAMPLES, BATCH = 6, 2
#: decisions taken from the calibration's statistics: they must be the same, not merely close
CHOICE_KEYS = ("alpha", "mbq_ratio", "clip", "dynamic", "updates")


@dataclass(frozen=True)
class Case:
    method: str
    format: str
    options: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        return f"{self.method}-{self.format}"

    def request(self, cache_dir: str | Path | None = None, **changes: Any):  # type: ignore[no-untyped-def]
        from qigbench.pipeline import QuantizeRequest

        fields: dict[str, Any] = dict(
            model="tiny-qwen2vl", method=self.method, format=self.format, options=self.options,
            samples=SAMPLES, batch_size=BATCH, progress=False,
            cache_dir=None if cache_dir is None else str(cache_dir),
        )
        fields.update(changes)
        return QuantizeRequest(**fields)


#: QIG at 2 path points: the reductions are the same at any number (the default may change)
QIG = (("qig.steps", "2"),)
CASES: tuple[Case, ...] = (
    *(Case(method, fmt, QIG if method.startswith("qig") else ())
      for method in ("gptq", "awq", "mbq", "qig", "qig-gptq", "tlq", "qvlm")
      for fmt in ("W3A16", "W4A8")),
    Case("rtn", "W4A8"),
    Case("smoothquant", "W4A8"),
)


def snapshot(result: Any) -> dict[str, Any]:
    """What a calibration produced: every tensor of every decoder block (quantized weights, scaled
    norms, activation ranges), the decisions per block and group, the block errors, how it ran."""
    from qigbench.models.registry import get_blocks

    blocks = get_blocks(result.loaded.model, result.loaded.family)
    tensors = {f"{i}.{k}": v.detach().cpu().clone() for i, b in enumerate(blocks) for k, v in b.state_dict().items()}
    choices: dict[str, Any] = {}
    for stats in result.report.blocks:
        for group, values in stats.get("groups", {}).items():
            for key, value in values.items():
                if key.split(".")[0].startswith(CHOICE_KEYS):
                    choices[f"{stats['block']}.{group}.{key}"] = value
    return {
        "tensors": tensors,
        "choices": choices,
        "errors": [float(b["rel_error"]) for b in result.report.blocks],
        "parallel": result.report.parallel,
    }


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max |a - b| / max |a|`` (0 when bitwise equal)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return float("inf")
    if torch.equal(a, b):
        return 0.0
    a64, b64 = a.double(), b.double()
    return float((a64 - b64).abs().max() / a64.abs().max().clamp_min(1e-30))


def compare(one: dict[str, Any], many: dict[str, Any]) -> dict[str, Any]:
    """How far the N-rank snapshot is from the single-process one."""
    assert one["tensors"].keys() == many["tensors"].keys()
    diffs = {k: relative_difference(one["tensors"][k], many["tensors"][k]) for k in one["tensors"]}
    differing = [k for k, d in diffs.items() if d > 0]
    return {
        "max_rel": max(diffs.values(), default=0.0),
        "worst": max(diffs, key=diffs.__getitem__) if differing else None,
        "tensors_differing": len(differing),
        "tensors": len(diffs),
        "bit_identical": not differing,
        "choices_equal": one["choices"] == many["choices"],
        "choices": len(one["choices"]),
        "error_rel": max((abs(x - y) / max(abs(x), 1e-30) for x, y in zip(one["errors"], many["errors"], strict=True)),
                         default=0.0),
    }
