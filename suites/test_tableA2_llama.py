"""Table A2: GPTQ vs QIG+GPTQ on a language model at 3 bits (PPL, PIQA, ARC-e/c, MMLU; on tiny
models the offline text tasks: perplexity and multiple choice), plus fidelity to the fp model."""

from __future__ import annotations

import pytest
from checks import assert_well_formed

pytestmark = pytest.mark.table("Table A2")


@pytest.mark.matrix("tableA2")
def test_tableA2(case, task, qig_measure):
    assert_well_formed(case, qig_measure())
