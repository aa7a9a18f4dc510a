"""The Table 1 / A1 ablations reach the engine as plain method options."""

from __future__ import annotations

import torch

from methods.qig import QIGMethodConfig
from qigbench.engine.method import get_method
from qigbench.engine.run import EngineConfig, calibrate
from qigbench.quant import parse_format
from qigbench.sensitivity.qig_provider import QIGConfig


def test_clipping_none_stays_a_name_and_optional_fields_accept_none() -> None:
    method = get_method("qig", {"qig.clipping": "none", "qig.error_scale": "none", "qig.quantized_no_grad": "true"})
    cfg = method.config
    assert isinstance(cfg, QIGMethodConfig)
    assert cfg.qig == QIGConfig(clipping="none", error_scale=None, quantized_no_grad=True)


def test_attention_sensitivity_gets_the_blocks_attention_probabilities(loader, calib_for) -> None:  # type: ignore[no-untyped-def]
    loaded = loader("tiny-qwen2vl")
    batches = calib_for(loaded, n=2)
    report = calibrate(loaded.model, loaded.family, batches, get_method("qig", {"sensitivity": "attention"}),
                       parse_format("W4A8"), EngineConfig(progress=False))
    weights = report.token_weights[1]["qkv"]
    valid = report.token_types != 0
    assert torch.allclose(weights.sum(-1), torch.ones(weights.shape[0]), atol=1e-5)
    # attention-based weights are not the uniform fallback
    uniform = valid.float() / valid.float().sum(-1, keepdim=True)
    assert not torch.allclose(weights, uniform, atol=1e-4)
