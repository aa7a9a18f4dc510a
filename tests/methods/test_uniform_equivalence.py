"""Token weighting is the *only* thing QIG changes: with uniform lambda, QIG is the unweighted
CWE search and QIG+GPTQ is GPTQ, bit for bit, through the whole engine on a real tiny VLM."""

from __future__ import annotations

import pytest
import torch

from qigbench.engine.method import get_method
from qigbench.engine.run import EngineConfig, calibrate
from qigbench.quant import parse_format


def _quantized_state(loader, calib_for, method: str, options: dict[str, str], fmt: str):  # type: ignore[no-untyped-def]
    loaded = loader("tiny-qwen2vl")
    batches = calib_for(loaded, n=4)
    calibrate(loaded.model, loaded.family, batches, get_method(method, options), parse_format(fmt),
            EngineConfig(progress=False))
    return loaded.model.state_dict()


@pytest.mark.parametrize("fmt", ["W3A16", "W4A8"])
def test_qig_with_uniform_weights_is_the_unweighted_search(loader, calib_for, fmt: str) -> None:  # type: ignore[no-untyped-def]
    qig = _quantized_state(loader, calib_for, "qig", {"sensitivity": "uniform"}, fmt)
    awq = _quantized_state(loader, calib_for, "awq", {"clip_search": "false"}, fmt)
    assert qig.keys() == awq.keys()
    for key in qig:
        assert torch.equal(qig[key], awq[key]), key


@pytest.mark.parametrize("fmt", ["W3A16", "W4A8"])
def test_qig_gptq_with_uniform_weights_is_gptq(loader, calib_for, fmt: str) -> None:  # type: ignore[no-untyped-def]
    ours = _quantized_state(loader, calib_for, "qig-gptq", {"sensitivity": "uniform"}, fmt)
    gptq = _quantized_state(loader, calib_for, "gptq", {}, fmt)
    for key in ours:
        assert torch.equal(ours[key], gptq[key]), key


def test_qig_weights_differ_from_uniform(loader, calib_for) -> None:  # type: ignore[no-untyped-def]
    """...and the real QIG weights do change the result (so the equalities above are not vacuous)."""
    qig = _quantized_state(loader, calib_for, "qig", {"qig.steps": "4"}, "W4A8")
    uni = _quantized_state(loader, calib_for, "qig", {"sensitivity": "uniform"}, "W4A8")
    assert any(not torch.equal(qig[k], uni[k]) for k in qig)
