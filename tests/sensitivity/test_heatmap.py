"""The Fig. 1 heatmap is written as a PNG from a recorded sample."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sens_blocks import make_target

from qigbench.sensitivity import SensitivityError, SensitivityRecorder, get_provider, plot_sensitivity_heatmap
from qigbench.sensitivity.heatmap import _bands
from qigbench.tokens import TokenType


def test_recorder_collects_one_sample_per_block_and_writes_a_png(tmp_path: Path) -> None:
    rec = SensitivityRecorder(sample=1)
    provider = get_provider("qig", steps=2)
    for block in range(3):
        for group in ("qkv", "down"):
            t = make_target(b=2, t=9, n_pad=[0, 2], seed=block)
            t.block_index, t.group = block, group
            out = provider(t)
            rec.record(t.block_index, out.weights, t.token_types, group)
    m = rec.matrix()
    assert m.shape == (3, 9)
    torch.testing.assert_close(m.sum(-1), torch.ones(3))
    png = rec.save(tmp_path / "sub" / "heat.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 2000


def test_recorder_can_keep_a_single_group() -> None:
    rec = SensitivityRecorder(group="qkv")
    tt = torch.ones(1, 4, dtype=torch.long)
    rec.record(0, torch.full((1, 4), 0.25), tt, "qkv")
    rec.record(0, torch.tensor([[1.0, 0, 0, 0]]), tt, "down")
    torch.testing.assert_close(rec.matrix(), torch.full((1, 4), 0.25))


def test_heatmap_refuses_mismatched_shapes_and_empty_recorders(tmp_path: Path) -> None:
    with pytest.raises(SensitivityError, match=r"\[layers, T\]"):
        plot_sensitivity_heatmap(torch.rand(2, 5), torch.ones(4), tmp_path / "x.png")
    with pytest.raises(SensitivityError, match="record"):
        SensitivityRecorder().matrix()


def test_bands_are_runs_of_equal_token_type() -> None:
    import numpy as np

    tt = np.array([3, 2, 2, 2, 1, 1, 3])
    assert _bands(tt) == [(0, 1, TokenType.SPECIAL), (1, 4, TokenType.VISION), (4, 6, TokenType.TEXT), (6, 7, 3)]
