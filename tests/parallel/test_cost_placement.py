"""``qigbench cost --devices``: peak memory per device of a placement, from exact weights and
streams and a measured block working set."""

from __future__ import annotations

from pathlib import Path

import pytest

from qigbench.cost.placement import GIB, RealShape, UnitProbe, format_placement, predict_placement
from qigbench.engine import unit as engine_unit
from qigbench.models.shapes.data import SHAPES

#: 8 blocks of 0.5 G parameters (1 GiB each in bf16), 1.5 G outside the decoder (3 GiB)
FAKE = RealShape(block_params=(2**29,) * 8, outside_params=3 * 2**29, hidden=4096, widest_input=16384,
                 vocab=32000, block_row_elements=60000, block_attention_heads=32)


def _predict(**changes):  # type: ignore[no-untyped-def]
    args = dict(method="awq", samples=128, tokens=300, batch_size=4, streams=1, measured_working=GIB,
                measured_dtype_bytes=4, width_divisor=1, capacity=24 * GIB, dtype_bytes=2, real=FAKE)
    args.update(changes)
    return predict_placement(SHAPES["internvl2-26b"], ["cuda:0", "cuda:1", "cuda:2", "cuda:3"], **args)


def test_weights_follow_the_engines_plan_and_streams_are_exact() -> None:
    found = _predict()
    # the first device also holds the 3 GiB outside the decoder, so it gets fewer blocks
    assert [d.blocks for d in found.devices] == [(0, 0), (1, 2), (3, 4), (5, 7)]
    assert [d.weights / GIB for d in found.devices] == [4.0, 2.0, 2.0, 3.0]
    assert all(d.streams == 128 * 300 * 4096 * 2 for d in found.devices)
    assert found.fits and all(d.peak == d.weights + d.streams + GIB for d in found.devices)
    assert not _predict(capacity=4 * GIB).fits


def test_a_narrowed_measurement_is_scaled_to_the_real_width_and_sample_count() -> None:
    wide = _predict(measured_working=GIB, width_divisor=4, samples=128, measured_samples=32)
    assert wide.devices[0].block_work == GIB * 4 * 4
    assert any("x4" in n for n in wide.notes) and any("32 -> 128 samples" in n for n in wide.notes)
    built = (16384 // 4) ** 2 * 12  # GPTQ's Hessian of the widest input at the built width...
    gptq = _predict(method="gptq", measured_working=GIB + built, width_divisor=4)
    assert gptq.devices[0].block_work == GIB * 4 + 16384**2 * 12  # ...is replaced by the real one


def test_gradient_methods_add_their_pipelined_pre_pass() -> None:
    tlq = _predict(method="tlq")
    first, second = tlq.devices[0], tlq.devices[1]
    assert first.prepare > second.prepare / 2 > 0  # the first device also takes the logits' cross-entropy
    assert _predict(method="awq").devices[0].prepare == 0
    text = format_placement("tlq W3A16, 128 samples", SHAPES["internvl2-26b"], tlq)
    assert "| cuda:0 | 0-0 |" in text and "fits: the fullest device is" in text


def test_the_real_shape_is_the_checkpoints() -> None:
    real = RealShape.of(SHAPES["internvl2-26b"])
    assert len(real.block_params) == 48
    assert sum(real.block_params) + real.outside_params == 25_514_186_112  # InternVL2-26B, exactly
    assert real.hidden == 6144 and real.widest_input == 16384


def test_the_probe_sees_every_unit_and_leaves_the_engine_as_it_was(cache_dir: Path) -> None:
    from dp_cases import CASES

    from qigbench.pipeline import quantize

    original = engine_unit.UnitContext.__iter__
    with UnitProbe("cpu") as found:
        quantize(next(c for c in CASES if c.name == "awq-W3A16").request(cache_dir))
    assert engine_unit.UnitContext.__iter__ is original
    assert len(found.starts) == len(found.peaks) == 2 and found.working >= 0
    assert all(p >= s for s, p in zip(found.starts, found.peaks, strict=True))


def test_more_devices_than_blocks_is_refused() -> None:
    from qigbench.cost.placement import PlacementCostError

    with pytest.raises(PlacementCostError, match="at most 8 devices"):
        predict_placement(SHAPES["internvl2-26b"], [f"cuda:{i}" for i in range(9)], method="awq", samples=1,
                          tokens=1, batch_size=1, streams=1, measured_working=0, measured_dtype_bytes=4,
                          width_divisor=1, real=FAKE)
