"""The token-sensitivity heatmap of the paper's Fig. 1, and the recorder that feeds it.

Rows are layers (blocks), columns token positions; a colour strip under the map marks each
position's token type (vision / text / special; padding is dropped), so inter- and
intra-modality structure is visible at a glance. matplotlib is imported lazily (Agg backend)
so the package itself does not need it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from qigbench.sensitivity.base import SensitivityError
from qigbench.tokens import TokenType

#: Band colours per token type (colour-blind safe Okabe-Ito picks).
TYPE_COLOURS: dict[TokenType, str] = {
    TokenType.VISION: "#E69F00",
    TokenType.TEXT: "#0072B2",
    TokenType.SPECIAL: "#009E73",
    TokenType.PAD: "#BBBBBB",
}


def _bands(types: np.ndarray) -> list[tuple[int, int, TokenType]]:
    """Runs of equal token type as ``(start, stop, type)``."""
    runs: list[tuple[int, int, TokenType]] = []
    start = 0
    for i in range(1, len(types) + 1):
        if i == len(types) or types[i] != types[start]:
            runs.append((start, i, TokenType(int(types[start]))))
            start = i
    return runs


def plot_sensitivity_heatmap(
    scores: Tensor | np.ndarray,
    token_types: Tensor | np.ndarray,
    path: str | Path,
    *,
    title: str = "token sensitivity (QIG)",
    layer_labels: list[str] | None = None,
    log_scale: bool = False,
) -> Path:
    """Write ``scores[layers, T]`` as a tokens x layers heatmap with token-type bands; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Patch

    s = np.asarray(scores.detach().cpu().float() if isinstance(scores, Tensor) else scores, dtype=np.float64)
    tt = np.asarray(token_types.detach().cpu() if isinstance(token_types, Tensor) else token_types).astype(int)
    if s.ndim != 2 or tt.ndim != 1 or s.shape[1] != tt.shape[0]:
        raise SensitivityError(
            f"heatmap needs scores [layers, T] and token_types [T], got {s.shape} and {tt.shape}; "
            "record one sample (SensitivityRecorder) and pass its token types"
        )
    keep = tt != TokenType.PAD
    s, tt = s[:, keep], tt[keep]
    if s.shape[1] == 0:
        raise SensitivityError("every position is padding; nothing to plot — record a sample with real tokens")
    width = min(16.0, 4.0 + 0.04 * s.shape[1])
    fig, (ax, band) = plt.subplots(
        2, 1, figsize=(width, 1.5 + 0.25 * s.shape[0]), sharex=True, gridspec_kw={"height_ratios": [s.shape[0], 1.2]}
    )
    norm = LogNorm(vmin=max(s[s > 0].min(), 1e-12), vmax=s.max()) if log_scale and (s > 0).any() else None
    im = ax.imshow(s, aspect="auto", interpolation="nearest", cmap="viridis", norm=norm)
    ax.set_ylabel("layer")
    ax.set_yticks(range(s.shape[0]), layer_labels or [str(i) for i in range(s.shape[0])])
    ax.set_title(title)
    fig.colorbar(im, ax=[ax, band], fraction=0.03, pad=0.01, label="lambda")
    for start, stop, kind in _bands(tt):
        band.axvspan(start - 0.5, stop - 0.5, color=TYPE_COLOURS[kind], lw=0)
    band.set_yticks([])
    band.set_xlabel("token position")
    present = [k for k in (TokenType.VISION, TokenType.TEXT, TokenType.SPECIAL) if (tt == k).any()]
    band.legend(
        handles=[Patch(color=TYPE_COLOURS[k], label=k.name.lower()) for k in present],
        loc="upper center", bbox_to_anchor=(0.5, -0.9), ncol=len(present), frameon=False,
    )  # fmt: skip
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return out


@dataclass
class SensitivityRecorder:
    """Collects lambda of one calibration sample per (block, group) so the engine can plot it.

    Call :meth:`record` after each provider call; ``group=None`` records every group and
    :meth:`matrix` averages the groups of a block (one row per block).
    """

    sample: int = 0
    group: str | None = None
    rows: dict[int, list[Tensor]] = field(default_factory=dict)
    token_types: Tensor | None = None

    def record(self, block_index: int, weights: Tensor, token_types: Tensor, group: str = "") -> None:
        if self.group is not None and group != self.group:
            return
        if self.sample >= weights.shape[0]:
            return
        self.rows.setdefault(block_index, []).append(weights[self.sample].detach().float().cpu())
        self.token_types = token_types[self.sample].detach().cpu()

    def matrix(self) -> Tensor:
        """``[layers, T]`` in block order (mean over the recorded groups of each block)."""
        if not self.rows:
            raise SensitivityError("nothing recorded; call SensitivityRecorder.record after each provider call")
        return torch.stack([torch.stack(self.rows[b]).mean(dim=0) for b in sorted(self.rows)])

    def save(self, path: str | Path, title: str = "token sensitivity (QIG)") -> Path:
        assert self.token_types is not None
        labels = [str(b) for b in sorted(self.rows)]
        return plot_sensitivity_heatmap(self.matrix(), self.token_types, path, title=title, layer_labels=labels)
