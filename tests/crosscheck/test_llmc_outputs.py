"""Our GPTQ and AWQ (W4 g128, asymmetric) against llm-compressor's on the same model and tokens.

The score is the error of the final logits on held-out tokens against the fp model; ours must be
within 10% of llm-compressor's (ours <= 1.10 x theirs) in relative MSE and in KL.
"""

from __future__ import annotations

from collections.abc import Callable
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

TOLERANCE = 1.10
#: case -> (our method, its options, llm-compressor recipe)
CASES: dict[str, tuple[str, dict[str, str], Callable[[], list[Any]]]] = {
    "gptq": ("gptq", {}, H.gptq_recipe),
    "awq": ("awq", {}, H.awq_recipe),
    # like for like: llm-compressor's AWQ has no clip search, so our scale search alone must keep up
    "awq-no-clip-search": ("awq", {"clip_search": "false"}, H.awq_recipe),
}


_THEIRS: dict[Callable[[], list[Any]], H.OutputError] = {}


def their_error(
    recipe: Callable[[], list[Any]], model_dir: Path, tokens: H.TokenSets, fp_logits: torch.Tensor
) -> H.OutputError:
    """llm-compressor's held-out error for ``recipe`` (computed once per recipe)."""
    if recipe not in _THEIRS:
        their_model = H.load_fp(model_dir)
        H.run_theirs(their_model, tokens.calib, recipe())
        read_back = H.model_with_state(model_dir, H.their_state(their_model))
        their_logits = H.logits(read_back, tokens.held_out)
        # the read-back weights are exactly what llm-compressor's own (fake-quantizing) forward uses
        torch.testing.assert_close(their_logits, H.logits(their_model, tokens.held_out), rtol=1e-5, atol=1e-5)
        _THEIRS[recipe] = H.output_error(fp_logits, their_logits)
    return _THEIRS[recipe]


@pytest.mark.parametrize("case", sorted(CASES))
def test_output_error_within_10_percent_of_llm_compressor(
    case: str, model_dir: Path, tokens: H.TokenSets, fp_logits: torch.Tensor, results: dict[str, Any]
) -> None:
    method, options, recipe = CASES[case]
    ours_model = H.load_fp(model_dir)
    H.run_ours(ours_model, tokens.calib, method, options)
    ours = H.output_error(fp_logits, H.logits(H.model_with_state(model_dir, H.our_state(ours_model)), tokens.held_out))

    theirs = their_error(recipe, model_dir, tokens, fp_logits)
    results[f"{case} W4A16g128 held-out logits"] = (
        f"ours {ours} | llm-compressor {theirs} | ratio rel.MSE {ours.rel_mse / theirs.rel_mse:.3f}, "
        f"KL {ours.kl / theirs.kl:.3f}"
    )
    assert theirs.rel_mse > 0, "llm-compressor left the model unchanged: the recipe did not apply"
    assert ours.rel_mse <= TOLERANCE * theirs.rel_mse, f"{case}: ours {ours} vs llm-compressor {theirs}"
    assert ours.kl <= TOLERANCE * theirs.kl, f"{case}: ours {ours} vs llm-compressor {theirs}"
