"""Our SmoothQuant scales against the ones llm-compressor applies, on the same model and tokens.

Both fold ``1/s`` into the RMSNorm in front of the group (q/k/v after input_layernorm, gate/up
after post_attention_layernorm), so ``s = w_norm_fp / w_norm_smoothed`` reads the scales back from
either model. With llm-compressor's statistic (channel max - min, 2 max|W|) ours must equal its
scales to 1e-4; with the paper's max|X| they must not (the comparison can tell them apart).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip(
    "llmcompressor",
    minversion="0.14",
    reason="llm-compressor is not installed here; run `tox -e crosscheck` (its own env: torch 2.13, transformers 5.17)",
)

import xc_harness as H

ALPHA = 0.5
TOLERANCE = 1e-4
NORMS = {"input_layernorm": ("q_proj", "k_proj", "v_proj"), "post_attention_layernorm": ("gate_proj", "up_proj")}
LLMC_OPTIONS = {"alpha": str(ALPHA), "statistic": "range", "weight_factor": "2.0"}


def norm_scales(fp: dict[str, torch.Tensor], smoothed: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {
        key: fp[key] / smoothed[key]
        for key in fp
        if key.startswith("model.layers.") and key.rsplit(".", 2)[-2] in NORMS
    }


def ours_scales(model_dir: Path, tokens: H.TokenSets, options: dict[str, str]) -> dict[str, torch.Tensor]:
    fp = H.load_fp(model_dir).state_dict()
    model = H.load_fp(model_dir)
    # fp propagation: llm-compressor's SmoothQuantModifier alone quantizes nothing, so every block
    # sees the (smoothed, equivalent) fp outputs of the previous one
    H.run_ours(model, tokens.calib, "smoothquant", options, fmt="W8A8", propagation="fp")
    return norm_scales(fp, model.state_dict())


@pytest.fixture(scope="module")
def their_scales(model_dir: Path, tokens: H.TokenSets) -> dict[str, torch.Tensor]:
    fp = H.load_fp(model_dir).state_dict()
    model = H.load_fp(model_dir)
    H.run_theirs(model, tokens.calib, H.smoothquant_recipe(ALPHA))
    smoothed = model.state_dict()
    scales = norm_scales(fp, smoothed)
    # the balance linears got W * s with the same s (their scales are internally consistent)
    for key, s in scales.items():
        prefix, norm = key.rsplit(".", 2)[0], key.rsplit(".", 2)[-2]
        for linear in NORMS[norm]:
            wkey = f"{prefix}.{'self_attn' if linear[0] in 'qkv' else 'mlp'}.{linear}.weight"
            torch.testing.assert_close(smoothed[wkey], fp[wkey] * s, rtol=1e-5, atol=1e-7)
    return scales


def max_relative_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys() and len(a) == 2 * H.SPEC.num_hidden_layers
    return max(float(((a[k] - b[k]).abs() / b[k].abs()).max()) for k in a)


def test_scales_match_llm_compressor(
    model_dir: Path, tokens: H.TokenSets, their_scales: dict[str, torch.Tensor], results: dict[str, Any]
) -> None:
    ours = ours_scales(model_dir, tokens, LLMC_OPTIONS)
    rel = max_relative_difference(ours, their_scales)
    absolute = max(float((ours[k] - their_scales[k]).abs().max()) for k in ours)
    spread = min(float(s.min()) for s in their_scales.values()), max(float(s.max()) for s in their_scales.values())
    results["smoothquant scales (statistic=range, weight_factor=2)"] = (
        f"max rel. diff {rel:.2e}, max abs. diff {absolute:.2e} over {len(ours)} norms "
        f"(scales in [{spread[0]:.3f}, {spread[1]:.3f}])"
    )
    assert rel <= TOLERANCE


def test_paper_statistic_gives_different_scales(
    model_dir: Path, tokens: H.TokenSets, their_scales: dict[str, torch.Tensor], results: dict[str, Any]
) -> None:
    """Negative control: the default max|X| statistic must not pass the same comparison."""
    ours = ours_scales(model_dir, tokens, {"alpha": str(ALPHA)})
    rel = max_relative_difference(ours, their_scales)
    results["smoothquant scales (paper statistic, control)"] = f"max rel. diff {rel:.2e}"
    assert rel > 100 * TOLERANCE
