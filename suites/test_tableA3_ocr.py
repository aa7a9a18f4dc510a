"""Table A3: OCR-specific calibration set (``--samples`` and twice that; the paper's 128 and 256),
MBQ vs QIG on OCR-heavy tasks (DocVQA, ChartQA, OCRBench; on tiny models the pack's OCR and chart
tasks), W4A8."""

from __future__ import annotations

import pytest
from checks import assert_well_formed

pytestmark = pytest.mark.table("Table A3")


@pytest.mark.matrix("tableA3")
def test_tableA3(case, task, qig_measure):
    assert_well_formed(case, qig_measure())
