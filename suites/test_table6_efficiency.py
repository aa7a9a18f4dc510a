"""Table 6: calibration cost of MBQ, QIG and leave-one-out sensitivity.

Each calibration runs once under pytest-benchmark (one round: a calibration is minutes on a real
model); wall seconds and peak memory are stored on every row of the configuration, and the
report's calibration table shows QIG's and LOO's time relative to MBQ. A configuration already
calibrated by another suite in this session is reused, its engine-measured time reported.
"""

from __future__ import annotations

import pytest
from checks import assert_well_formed

pytestmark = pytest.mark.table("Table 6")


@pytest.mark.matrix("table6")
def test_table6(case, task, qig_measure, qig_suite, benchmark):
    found = qig_measure(timer=benchmark)
    assert_well_formed(case, found)
    report = qig_suite.quantized(case).report
    benchmark.extra_info.update(
        calib_seconds=report.seconds, peak_memory_bytes=report.peak_memory_bytes, device=report.device
    )
    assert report.seconds > 0.0
