"""The cost predictor's arithmetic: per-block cost x depth plus fixed parts, fitted prepare lines, peaks."""

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
        prepare_at=(),
        total_seconds=20.0,  # 10 capture + 8 blocks + 2 other
        resident_bytes_per_block=0,
        block_bytes=GIB,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_block_loop_scales_with_depth_and_the_rest_is_fixed() -> None:
    p = predict(measurement(block_seconds=(4.0, 4.0)), depth=28)
    assert p.parts["blocks"] == pytest.approx(28 * 4.0)
    assert p.parts["capture"] == pytest.approx(10.0)
    assert p.parts["other"] == pytest.approx(2.0)
    assert p.seconds == pytest.approx(112 + 10 + 2)
    assert p.hours == pytest.approx(124 / 3600)


def three_depths(**changes: object) -> Measurement:
    """Prepare timed at 3, 2 and 1 blocks: 6 s fixed + 4 s per block (after a warm-up pass at 1 block
    that took 3 s more)."""
    base = measurement(
        blocks=3, block_seconds=(4.0, 4.0, 4.0), prepare=Phase(seconds=18.0),
        prepare_at=((2, Phase(seconds=14.0)), (1, Phase(seconds=10.0))), prepare_warmup=(1, Phase(seconds=13.0)),
        total_seconds=10.0 + 12.0 + 18.0,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_predicting_the_measured_depth_gives_back_the_measured_total_plus_the_warm_up_once() -> None:
    m = three_depths()
    p = predict(m, depth=3)
    assert p.parts["prepare_warmup"] == pytest.approx(3.0)  # the first pass's 13 s over the warm 10 s
    assert p.seconds == pytest.approx(m.total_seconds + 3.0)  # a fresh run's prepare is its first pass


def test_block_zero_is_charged_once() -> None:
    m = measurement(block_seconds=(5.0, 3.0), total_seconds=10.0 + 8.0 + 2.0)
    assert predict(m, depth=28).parts["blocks"] == pytest.approx(5.0 + 27 * 3.0)


def test_prepare_is_a_least_squares_line_over_the_measured_depths() -> None:
    p = predict(three_depths(), depth=28)
    assert p.parts["prepare_per_block"] == pytest.approx(28 * 4.0)
    assert p.parts["prepare_fixed"] == pytest.approx(6.0)
    assert p.warnings == ()
    assert p.prepare_fit is not None and p.prepare_fit.depths == (1, 2, 3)


def test_prepare_through_two_depths_is_fitted_but_flagged_as_unchecked() -> None:
    m = measurement(prepare=Phase(seconds=14.0), prepare_at=((1, Phase(seconds=10.0)),), total_seconds=34.0)
    p = predict(m, depth=28)
    assert p.parts["prepare_per_block"] == pytest.approx(28 * 4.0)  # 14 - 10 per block
    assert p.parts["prepare_fixed"] == pytest.approx(6.0)  # 14 - 2 * 4
    assert any("2 depths" in w and "nothing checks it" in w for w in p.warnings)


def test_prepare_from_one_depth_is_charged_per_block_with_a_warning() -> None:
    m = measurement(blocks=1, block_seconds=(4.0,), prepare=Phase(seconds=10.0), total_seconds=26.0)
    p = predict(m, depth=28)
    assert p.parts["prepare_per_block"] == pytest.approx(280.0)
    assert p.parts["prepare_fixed"] == 0.0
    assert any("one depth" in w and "upper bound" in w for w in p.warnings)


def test_a_negative_prepare_slope_is_an_error_not_a_zero() -> None:
    # the old predictor clamped this slope to 0 and predicted MBQ 32% low at 6 blocks
    m = three_depths(prepare=Phase(seconds=10.0), prepare_at=((2, Phase(seconds=11.0)), (1, Phase(seconds=12.0))))
    with pytest.raises(CostModelError, match="negative"):
        predict(m, depth=28)


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
        prepare=Phase(seconds=1.0, peak_bytes=12 * GIB), prepare_at=((1, Phase(seconds=0.5, peak_bytes=10 * GIB)),)
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


def test_on_the_host_a_prepare_peak_adds_the_blocks_beyond_the_built_ones() -> None:
    # CPU: the truncated model's prepare still has every built block resident, so the fitted line holds only
    # the activations' growth; each further block of the real depth adds its resident bytes
    m = three_depths(
        prepare=Phase(seconds=18.0, peak_bytes=10 * GIB), resident_bytes_per_block=GIB,
        prepare_at=((2, Phase(seconds=14.0, peak_bytes=9 * GIB)), (1, Phase(seconds=10.0, peak_bytes=8 * GIB))),
    )  # fmt: skip
    p = predict(m, depth=6)
    assert p.peaks["prepare"] == 7 * GIB + 6 * GIB + 3 * GIB  # line 7 + 1/block at 6, plus 3 resident blocks


def test_peaks_above_where_each_pass_began_cancel_what_earlier_passes_left_behind() -> None:
    # RSS after a pass stays up (the allocator keeps freed memory): the second and third passes start 1 GiB
    # higher than the first; their increments (1 + 0.5/block) sit on the first pass's start (4 GiB)
    m = three_depths(
        prepare=Phase(seconds=18.0, peak_bytes=7 * GIB + GIB // 2, start_bytes=5 * GIB),
        prepare_at=((2, Phase(seconds=14.0, peak_bytes=7 * GIB, start_bytes=5 * GIB)),
                    (1, Phase(seconds=10.0, peak_bytes=6 * GIB + GIB // 2, start_bytes=5 * GIB))),
        prepare_warmup=(1, Phase(seconds=13.0, peak_bytes=5 * GIB + GIB // 2, start_bytes=4 * GIB)),
    )  # fmt: skip
    p = predict(m, depth=6)
    assert p.prepare_memory_fit is not None and p.prepare_memory_fit.slope == pytest.approx(GIB / 2)
    assert p.peaks["prepare"] == 4 * GIB + GIB + 6 * (GIB // 2)


def test_a_negative_peak_slope_is_kept_with_a_warning() -> None:
    m = three_depths(
        prepare=Phase(seconds=18.0, peak_bytes=8 * GIB),
        prepare_at=((2, Phase(seconds=14.0, peak_bytes=9 * GIB)), (1, Phase(seconds=10.0, peak_bytes=10 * GIB))),
    )  # fmt: skip
    p = predict(m, depth=6)
    assert p.prepare_memory_fit is not None and p.prepare_memory_fit.slope == pytest.approx(-GIB)
    assert any("prepare peak" in w and "negative" in w for w in p.warnings)
