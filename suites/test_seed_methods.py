"""The project's other two seed methods in their own settings (reference/q-vlm-and-tlq.md):

* TLQ's ablations at W4A8: importance on/off, exposure on/off, token selection ratio;
* TLQ's comparison: TLQ vs MBQ vs RTN vs SmoothQuant, W3A16 and W4A8 (paper: LLaVA-OneVision and
  Qwen2-VL at three scales);
* Q-VLM's setting: W4A4, reference mode, the paper-mode reconstruction and the release's 13B
  behaviour (every range dynamic); the paper's 80.78 (LLaVA-v1.3-13B, ScienceQA) is the reference
  column of the leaderboard.

Both methods are in Table 2 as well (``--methods ...,qvlm,tlq``)."""

from __future__ import annotations

import pytest
from checks import assert_well_formed


@pytest.mark.table("TLQ ablations")
@pytest.mark.matrix("tlq_ablation")
def test_tlq_ablations(case, task, qig_measure):
    assert_well_formed(case, qig_measure())


@pytest.mark.table("TLQ comparison")
@pytest.mark.matrix("tlq_compare")
def test_tlq_comparison(case, task, qig_measure):
    assert_well_formed(case, qig_measure())


@pytest.mark.table("Q-VLM setting")
@pytest.mark.matrix("qvlm_setting")
def test_qvlm_setting(case, task, qig_measure):
    assert_well_formed(case, qig_measure())
