"""The cost predictor's arithmetic: per-block cost x depth plus fixed parts, two-depth lines, peaks."""

from __future__ import annotations

import dataclasses

import pytest

from qigbench.cost import CostModelError, Measurement, Phase, predict

GIB = 1024**3


def measurement(**changes: object) -> Measurement:
    base = Measurement(
        blocks=2,
        block_seconds=(3.0, 5.0),
        block_phase_peak_bytes=5 * GIB,
        capture=Phase(seconds=10.0, peak_bytes=4 * GIB),
        prepare=Phase(),
        prepare_shallower=None,
        total_seconds=20.0,  # 10 capture + 8 blocks + 2 other
        resident_bytes_per_block=0,
        block_bytes=GIB,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_block_loop_scales_with_depth_and_the_rest_is_fixed() -> None:
    p = predict(measurement(), depth=28)
    assert p.parts["blocks"] == pytest.approx(28 * 4.0)
    assert p.parts["capture"] == pytest.approx(10.0)
    assert p.parts["other"] == pytest.approx(2.0)
    assert p.seconds == pytest.approx(112 + 10 + 2)
    assert p.hours == pytest.approx(124 / 3600)


def test_predicting_the_measured_depth_gives_back_the_measured_total() -> None:
    m = measurement(prepare=Phase(seconds=14.0), prepare_shallower=Phase(seconds=10.0), total_seconds=34.0)
    assert predict(m, depth=2).seconds == pytest.approx(34.0)


def test_prepare_is_a_line_through_two_depths() -> None:
    m = measurement(prepare=Phase(seconds=14.0), prepare_shallower=Phase(seconds=10.0), total_seconds=34.0)
    p = predict(m, depth=28)
    assert p.parts["prepare_per_block"] == pytest.approx(28 * 4.0)  # 14 - 10 per block
    assert p.parts["prepare_fixed"] == pytest.approx(6.0)  # 14 - 2 * 4


def test_prepare_from_one_depth_is_charged_per_block() -> None:
    m = measurement(blocks=1, block_seconds=(4.0,), prepare=Phase(seconds=10.0), total_seconds=26.0)
    p = predict(m, depth=28)
    assert p.parts["prepare_per_block"] == pytest.approx(280.0)
    assert p.parts["prepare_fixed"] == 0.0


def test_a_noisy_shallower_prepare_never_gives_a_negative_slope() -> None:
    m = measurement(prepare=Phase(seconds=10.0), prepare_shallower=Phase(seconds=11.0), total_seconds=30.0)
    p = predict(m, depth=28)
    assert p.parts["prepare_per_block"] == 0.0 and p.parts["prepare_fixed"] == pytest.approx(10.0)


def test_vision_layer_time_scales_to_the_real_tower_depth() -> None:
    m = measurement(capture=Phase(seconds=10.0, peak_bytes=GIB, vision_seconds=4.0), vision_layers_built=2)
    p = predict(m, depth=28, vision_layers=32)
    assert p.parts["vision"] == pytest.approx(4.0 * 16)
    assert p.parts["capture"] == pytest.approx(6.0)
    assert predict(m, depth=28).parts["vision"] == pytest.approx(4.0)  # no real depth given: unscaled


def test_host_memory_grows_with_resident_blocks_and_vision_layers() -> None:
    m = measurement(resident_bytes_per_block=GIB, vision_layers_built=2, vision_layer_bytes=GIB // 4,
                    vision_resident=True)
    p = predict(m, depth=28, vision_layers=32)
    assert p.peaks["blocks"] == 5 * GIB + 26 * GIB + 30 * (GIB // 4)
    assert p.peak_bytes == p.peaks["blocks"]


def test_device_block_phase_is_flat_in_depth_but_a_whole_model_prepare_is_not() -> None:
    m = measurement(
        prepare=Phase(seconds=1.0, peak_bytes=12 * GIB), prepare_shallower=Phase(seconds=0.5, peak_bytes=10 * GIB)
    )
    p = predict(m, depth=28)
    assert p.peaks["blocks"] == 5 * GIB  # one block at a time on the device
    assert p.peaks["prepare"] == 8 * GIB + 28 * 2 * GIB  # fixed 12 - 2*2, slope 2 per block
    assert p.peak_bytes == p.peaks["prepare"]
    m_vis = dataclasses.replace(m, vision_layers_built=2, vision_layer_bytes=GIB)
    assert predict(m_vis, depth=28, vision_layers=4).peaks["capture"] == 4 * GIB + 2 * GIB  # tower on the device


def test_bad_requests_are_refused() -> None:
    with pytest.raises(CostModelError, match="real depth"):
        predict(measurement(), depth=1)
    with pytest.raises(CostModelError, match="--blocks 1"):
        predict(measurement(blocks=0, block_seconds=()), depth=28)
