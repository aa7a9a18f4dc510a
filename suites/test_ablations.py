"""Ablations at W4A8: Table 1 (sensitivity estimators: modality/MBQ, uniform, gradient, attention,
leave-one-out, QIG), Table 4 (IG baseline x objective) and Table A1 (score clipping, and the
number of integration steps). Each variant is a QIG method option, stored as ``qig [key=value]``."""

from __future__ import annotations

import pytest
from checks import assert_well_formed


@pytest.mark.table("Table 1")
@pytest.mark.matrix("table1")
def test_table1_sensitivity(case, task, qig_measure):
    assert_well_formed(case, qig_measure())


@pytest.mark.table("Table 4")
@pytest.mark.matrix("table4")
def test_table4_ig_configuration(case, task, qig_measure):
    assert_well_formed(case, qig_measure())


@pytest.mark.table("Table A1")
@pytest.mark.matrix("tableA1")
def test_tableA1_clipping(case, task, qig_measure):
    assert_well_formed(case, qig_measure())
