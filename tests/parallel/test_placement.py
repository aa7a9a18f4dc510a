"""Multi-device placement (``--devices``, TLQ's multi-GPU layout, any method): the same model as
single-device offload, bit for bit; stages are contiguous, balanced and cut at unit boundaries.

Only ``cpu,cpu`` can run here (no GPU): it checks that the placement path -- resident stages, the
streams and recorded calls following the stage, the pipelined pre-passes with their hooks --
computes exactly what the offload path computes. That the blocks really stay on their GPUs is
what ``scripts/gpu_check.sh``'s 2-GPU section checks (not run here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from dp_cases import CASES, Case, snapshot
from hypothesis import given
from hypothesis import strategies as st

from qigbench.engine.placement import PlacementError, parse_devices, plan_stages

#: a method of each kind: scale search (+ clip), a gradient pre-pass (MBQ, TLQ: pipelined over
#: the devices), GPTQ's Hessians, Q-VLM's sample-major pre-pass and activation ranges
PLACED = [c for c in CASES if c.name in ("awq-W3A16", "mbq-W4A8", "tlq-W4A8", "gptq-W3A16", "qvlm-W4A8")]


@pytest.mark.parametrize("case", PLACED, ids=[c.name for c in PLACED])
def test_two_stages_give_the_single_device_result(case: Case, cache_dir: Path) -> None:
    from qigbench.pipeline import quantize

    offload = quantize(case.request(cache_dir))
    placed = quantize(case.request(cache_dir, devices=("cpu", "cpu")))
    one, two = snapshot(offload), snapshot(placed)
    assert one["tensors"].keys() == two["tensors"].keys()
    for name, value in one["tensors"].items():
        assert torch.equal(value, two["tensors"][name]), name
    assert one["choices"] == two["choices"] and one["errors"] == two["errors"]
    assert [(e["device"], e["blocks"]) for e in placed.report.placement] == [("cpu", [0, 0]), ("cpu", [1, 1])]
    assert offload.report.placement == []
    assert not hasattr(placed.loaded.model, "hf_device_map")  # the pre-pass marker is removed again
    record = placed.record()
    assert record["placement"][1]["blocks"] == [1, 1] and record["config_hash"] == offload.record()["config_hash"]


def test_the_cli_takes_devices(tmp_path: Path, cache_dir: Path) -> None:
    from qigbench.cli import main

    out = tmp_path / "model"
    code = main(["quantize", "--model", "tiny-qwen2vl", "--method", "rtn", "--format", "W4A8", "--devices", "cpu,cpu",
                 "--cache-dir", str(cache_dir), "--no-progress", "--save", str(out)])
    assert code == 0
    record = json.loads((out / "qigbench_quantization.json").read_text())
    assert [e["device"] for e in record["placement"]] == ["cpu", "cpu"]


def test_bad_devices_are_refused() -> None:
    with pytest.raises(PlacementError, match="not a device"):
        parse_devices("cuda:0,gpu1")
    assert parse_devices(" cpu , cpu ") == ("cpu", "cpu")
    with pytest.raises(PlacementError, match="at most 2 devices"):
        plan_stages([1, 1], 3)


@given(st.lists(st.integers(1, 100), min_size=1, max_size=12), st.integers(1, 4), st.integers(0, 300))
def test_stages_are_contiguous_and_no_other_cut_has_a_smaller_largest_stage(
    sizes: list[int], devices: int, extra: int
) -> None:
    import itertools

    if devices > len(sizes):
        with pytest.raises(PlacementError):
            plan_stages(sizes, devices, extra)
        return
    stages = plan_stages(sizes, devices, extra)
    assert stages[0][0] == 0 and stages[-1][1] == len(sizes) and len(stages) == devices
    assert all(a < b for a, b in stages) and all(stages[k][1] == stages[k + 1][0] for k in range(devices - 1))

    def largest(cuts: list[tuple[int, int]]) -> int:
        return max(sum(sizes[a:b]) + (extra if k == 0 else 0) for k, (a, b) in enumerate(cuts))

    best = min(
        largest([(a, b) for a, b in zip((0, *c), (*c, len(sizes)), strict=True)])
        for c in itertools.combinations(range(1, len(sizes)), devices - 1)
    )
    assert largest(stages) == best
