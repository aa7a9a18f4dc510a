"""Which calibration samples this rank owns: a contiguous run of whole batches.

Contiguous, in rank order, so that concatenating the ranks' rows (:func:`all_gather_rows`)
gives back the calibration set in its own order, and rank 0 holds sample 0 (the heatmap's).
Whole batches, so that every batch is computed exactly as one process computes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from torch import Tensor

from qigbench.parallel.state import ParallelError, World

B = TypeVar("B")


@dataclass(frozen=True)
class Shard:
    """Samples ``start .. stop - 1`` of ``total`` (all of them in one process), held in batches
    ``first_batch .. last_batch - 1``."""

    start: int
    stop: int
    total: int
    first_batch: int = 0
    last_batch: int = 0

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.stop == self.total

    def rows(self, t: Tensor) -> Tensor:
        """This rank's rows of a tensor over every sample (``t`` itself when the shard is whole)."""
        if self.whole:
            return t
        if int(t.shape[0]) != self.total:
            raise ValueError(f"expected a tensor over all {self.total} samples, got {int(t.shape[0])} rows")
        return t[self.start : self.stop]

    def batches(self, items: Sequence[B]) -> list[B]:
        return list(items[self.first_batch : self.last_batch])


def shard_batches(batch_sizes: Sequence[int], w: World | None = None) -> Shard:
    """Rank ``w.rank``'s contiguous share of the batches (``n // size`` or one more each);
    ``w=None``: one process, every batch."""
    w = w if w is not None else World()
    n = len(batch_sizes)
    total = int(sum(batch_sizes))
    if w.size <= 1:
        return Shard(0, total, total, 0, n)
    if n < w.size:
        raise ParallelError(
            f"{n} calibration batches cannot be shared by {w.size} ranks: every rank needs at least one; "
            f"lower --batch-size (or raise --samples) so that there are >= {w.size} batches"
        )
    lo, hi = (w.rank * n) // w.size, ((w.rank + 1) * n) // w.size
    start = int(sum(batch_sizes[:lo]))
    return Shard(start, start + int(sum(batch_sizes[lo:hi])), total, lo, hi)
