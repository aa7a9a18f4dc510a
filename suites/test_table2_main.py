"""Table 2: FP16 and PTQ methods (``--methods``) x formats (``--formats``) x tasks, plus fidelity
to the fp model (KL, top-1 flip rate, mean block error) for every quantized configuration."""

from __future__ import annotations

import pytest
from checks import assert_well_formed

pytestmark = pytest.mark.table("Table 2")


@pytest.mark.matrix("table2")
def test_table2(case, task, qig_measure):
    assert_well_formed(case, qig_measure())
