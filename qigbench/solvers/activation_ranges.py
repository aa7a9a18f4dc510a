"""Calibration of per-input-channel static activation ranges (Q-VLM).

* :class:`EntropyGatedRanges` — the released code's schedule (quant_modules.py:132-222): linears
  are visited in execution order, prompt by prompt; a linear widens its running min/max with the
  current prompt only when the previous linear's score reaches the running mean of the scores
  (the entropy gate), on every third decoder block, and on its first call; its input is then
  quantized with the range and passed on. A final prompt may search one clip ratio per linear.
* :func:`clip_search_ratio` — that search: the ratio of a 7-point grid minimising
  ``mean |Q_r(x) - x|^p`` (``p = 0.5``, lp_loss in quant_utils.py:26-33).
* :func:`partition_linears` — paper mode's entropy-guided cut of the linear sequence into blocks
  (an assumption of the specification, A3): a linear joins the current block while the previous
  score is at least the threshold, up to ``max_len`` linears, with a forced cut every
  ``force_every`` decoder blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from qigbench.quant.static import fake_quantize_static, update_range
from qigbench.sensitivity.entropy import EntropyNorm, conditional_entropy, token_entropy, update_flag

CLIP_GRID: tuple[float, ...] = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4)


def clip_search_ratio(
    x: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    bits: int,
    mask: torch.Tensor | None = None,
    grid: Sequence[float] = CLIP_GRID,
    p: float = 0.5,
) -> float:
    """The grid ratio ``r`` whose range ``r [lo, hi]`` reconstructs ``x`` best (masked tokens out)."""
    best, best_loss = float(grid[0]), float("inf")
    keep = None if mask is None else mask.to(x.device)
    for r in grid:
        err = (fake_quantize_static(x, lo, hi, bits, float(r)).float() - x.float()).abs().pow(p)
        loss = float(err[keep].mean() if keep is not None else err.mean())
        if loss < best_loss:
            best, best_loss = float(r), loss
    return best


def layer_score(
    xq: torch.Tensor, prev_xq: torch.Tensor | None, entropy_role: bool, mask: torch.Tensor, norm: EntropyNorm,
    batch_sizes: Sequence[int] | None = None,
) -> float:
    """Entropy for q/down (and whenever the previous input has another shape), else the dependency
    (``batch_sizes``: summed per recorded batch, see :func:`qigbench.sensitivity.entropy.token_entropy`)."""
    if entropy_role or prev_xq is None or prev_xq.shape != xq.shape:
        return token_entropy(xq, mask, norm, batch_sizes)
    return conditional_entropy(prev_xq, xq, mask, batch_sizes)


@dataclass
class EntropyGatedRanges:
    """The released calibration state across linears, blocks and prompts."""

    bits: int
    norm: EntropyNorm = "l2"
    threshold: float | None = None  # None: running mean of this prompt's scores (HEAD); 37: first release
    force_every: int = 3
    ranges: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    calls: dict[tuple[int, str], int] = field(default_factory=dict)
    updates: dict[tuple[int, str], int] = field(default_factory=dict)
    clip: dict[tuple[int, str], float] = field(default_factory=dict)
    scores: list[float] = field(default_factory=list)
    _prev_score: float | None = None
    _prev_xq: torch.Tensor | None = None

    def observe(
        self, block: int, name: str, x: torch.Tensor, mask: torch.Tensor, *,
        first_linear: bool, entropy_role: bool, appends: int = 1,
    ) -> torch.Tensor:
        """One linear on one prompt (steps 2a-2c): gate, maybe widen, quantize, score."""
        key = (block, name)
        if first_linear:  # the score list restarts with every prompt (quant_modules.py:140-142)
            self.scores.clear()
            self._prev_score, self._prev_xq = None, None
        flag = update_flag(
            self._prev_score, self.scores, block=block, first_linear=first_linear,
            first_call=self.calls.get(key, 0) == 0, threshold=self.threshold, force_every=self.force_every,
        )
        self.calls[key] = self.calls.get(key, 0) + 1
        if key not in self.ranges:
            zeros = torch.zeros(x.shape[-1], device=x.device)
            self.ranges[key] = (zeros, zeros.clone())
        if flag:
            self.ranges[key] = update_range(*self.ranges[key], x, mask)
            self.updates[key] = self.updates.get(key, 0) + 1
        xq = self.quantize(key, x)
        score = layer_score(xq, self._prev_xq, entropy_role, mask, self.norm)
        self.scores.extend([score] * appends)
        self._prev_score, self._prev_xq = score, xq
        return xq

    def search_clip(
        self, block: int, name: str, x: torch.Tensor, mask: torch.Tensor, grid: Sequence[float]
    ) -> torch.Tensor:
        """Step 4: pick this linear's ratio on its current input, shrink its range, pass ``Q(x)`` on."""
        key = (block, name)
        lo, hi = self.ranges[key]
        r = clip_search_ratio(x, lo, hi, self.bits, mask, grid)
        self.ranges[key] = (lo * r, hi * r)
        self.clip[key] = r
        return self.quantize(key, x)

    def quantize(self, key: tuple[int, str], x: torch.Tensor) -> torch.Tensor:
        lo, hi = self.ranges[key]
        return fake_quantize_static(x, lo.to(x.device), hi.to(x.device), self.bits)


def partition_linears(
    scores: Sequence[float],
    starts: Sequence[bool],
    threshold: float,
    max_len: int,
    open_len: int = 0,
    previous_score: float | None = None,
) -> tuple[list[int], int, bool]:
    """Segment id (0, 1, ...) of each linear: a new segment begins where the previous linear's score
    is below ``threshold`` (weak dependency), where the current one reached ``max_len`` linears, or
    where ``starts`` forces a cut. ``open_len`` and ``previous_score`` carry the segment still open
    at the end of the previous decoder block. Returns the ids, the length of the segment left open
    at the end (counting its linears in earlier blocks) and whether the first linear continued the
    previous block's segment."""
    ids: list[int] = []
    seg, length, prev = -1, open_len, previous_score
    continued = False
    for j, (score, forced) in enumerate(zip(scores, starts, strict=True)):
        cut = forced or prev is None or prev < threshold or length >= max_len
        if cut:
            length = 0
        if cut or seg == -1:
            seg += 1
            continued = continued or (j == 0 and not cut)
        length += 1
        ids.append(seg)
        prev = score
    return ids, length, continued
