"""The engine's ``activation_bytes``: the calibration activations a block's work holds, counted
from the tensors themselves. Data parallelism is worth its memory only if this is what a rank's
share of the samples divides, so the test checks that it scales with the samples held."""

from __future__ import annotations

from pathlib import Path

import torch

from methods.awq import AWQ, AWQConfig
from methods.gptq import GPTQ
from qigbench.engine.held import STAT, held_bytes
from qigbench.engine.replay import Call
from qigbench.engine.run import calibrate
from qigbench.models.registry import family_for
from qigbench.quant import parse_format


def test_held_bytes_counts_each_storage_once() -> None:
    a = torch.zeros(4, 8)  # 128 bytes
    b = torch.zeros(2, 3, dtype=torch.float64)  # 48 bytes
    call = Call(args=(a[1:],), kwargs={"mask": b, "n": 3})
    assert held_bytes(a) == 128
    assert held_bytes([a, a.view(8, 4), a[2:]], {"x": b}) == 176  # views share a's storage
    assert held_bytes(call, [call], None) == 176
    assert held_bytes([]) == 0


def _texts(n: int) -> list[str]:
    # every sample the same length (no padding), so two batches hold exactly twice one batch
    return [f"the digit {i} is written in black ink" for i in range(n)]


def test_activation_bytes_follow_the_samples_held(tiny_llama_dir: Path, tools) -> None:  # type: ignore[no-untyped-def]
    torch.set_num_threads(1)
    fmt = parse_format("W3A16g16")
    found = {}
    for n in (2, 4):
        for method in (AWQ(AWQConfig(clip_search=False, n_grid=4)), GPTQ()):
            model = tools.load(tiny_llama_dir)
            batches = tools.batches(tiny_llama_dir, _texts(n), batch_size=2)
            report = calibrate(model, family_for(model), batches, method, fmt)
            found[method.name, n] = [b[STAT] for b in report.blocks]
    for name in ("awq", "gptq"):
        one, two = found[name, 2], found[name, 4]
        assert all(x > 0 for x in one)
        # every held tensor is per batch: twice the batches, twice the bytes (within the few
        # batch-free tensors a recorded call may share, such as a 1-D position index)
        assert all(1.95 <= b / a <= 2.0 for a, b in zip(one, two, strict=True)), (name, one, two)
