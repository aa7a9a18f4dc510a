"""The token-sensitivity heatmap of a QIG run (paper Fig. 1), written next to the results db.

The engine keeps ``lambda[N, T]`` per block and scaling group but not the token types, so the
calibration batches are rebuilt (same source, seed and size: the same samples) and padded to one
length as the engine pads them, to colour the token-type strip. Row 0 of ``lambda`` is that batch's first sample.
"""

from __future__ import annotations

from pathlib import Path

import torch

from qigbench.pipeline import QuantizeResult
from qigbench.sensitivity.heatmap import plot_sensitivity_heatmap


def sample_scores(result: QuantizeResult, sample: int = 0) -> torch.Tensor:
    """``[blocks, T]``: the sample's lambda per block, averaged over the block's scaling groups."""
    weights = result.report.token_weights
    rows = [torch.stack([w[sample].float() for w in weights[b].values()]).mean(dim=0) for b in sorted(weights)]
    return torch.stack(rows)


def first_sample_types(result: QuantizeResult) -> torch.Tensor:
    from qigbench.data.loader import load_calibration
    from qigbench.engine.collate import unify_lengths

    req = result.request
    source = result.calibration.get("source")
    if source is None:
        raise ValueError("the run used no calibration set, so it has no token sensitivities to plot")
    calib = load_calibration(
        source,
        model=result.loaded,
        n_samples=req.samples,
        seed=req.seed,
        batch_size=req.batch_size,
        max_length=req.max_length,
    )
    return unify_lengths(list(calib.batches))[0].token_types[0]  # padded as the engine pads them


def write_heatmap(result: QuantizeResult, path: str | Path, title: str) -> Path:
    scores = sample_scores(result)
    types = first_sample_types(result)
    if types.shape[0] != scores.shape[1]:
        raise ValueError(f"token types cover {types.shape[0]} positions but lambda has {scores.shape[1]}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    labels = [str(b) for b in sorted(result.report.token_weights)]
    return plot_sensitivity_heatmap(scores, types, path, title=title, layer_labels=labels)
