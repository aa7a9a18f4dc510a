"""Table 5: GPTQ vs QIG+GPTQ (GPTQ's Hessian weighted by QIG token sensitivities), W3A16."""

from __future__ import annotations

import pytest
from checks import assert_well_formed

pytestmark = pytest.mark.table("Table 5")


@pytest.mark.matrix("table5")
def test_table5(case, task, qig_measure):
    assert_well_formed(case, qig_measure())
