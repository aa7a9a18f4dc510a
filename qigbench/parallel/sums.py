"""Sums over calibration samples that do not depend on how the samples are shared out.

Why this exists (measured, see tests/parallel): summing the same float32 numbers in another
order changes the last bits, and quantization turns a last-bit difference into a different
grid point -- GPTQ's error feedback through an ill-conditioned inverse Hessian, or an 8-bit
activation rounding one block later, amplified a 1e-7 difference in a Hessian or an activation
mean into weights a whole grid step apart. So every sum over samples is taken in two levels:

1. **per recorded calibration batch**, in float32 (the tensors have the batch's own shape, so
   the kernels -- and their summation order -- are the same whichever rank holds the batch);
2. **across batches and ranks in float64**. Adding float32 numbers in float64 is *exact* (no
   rounding at all) unless the terms span more than ~2^29 in magnitude, and an exact sum does
   not depend on its order: one process and N ranks get the same float64 value, hence the same
   float32 result. (When some term is that small its rounding may differ, by one float64 ulp;
   the float32 value changes only if that ulp crosses a float32 rounding boundary, a chance of
   about 4e-9 per such term.)

The batch is the unit because the ranks hold whole batches (:mod:`.shard`): a rank computes
exactly the per-batch partials one process computes, and the collectives add float64 numbers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor


def batch_spans(sizes: Sequence[int] | None, start: int, stop: int) -> Iterator[tuple[int, int]]:
    """The recorded batches' row ranges inside rows ``start:stop`` (``sizes`` None: one range)."""
    if not sizes:
        yield start, stop
        return
    offset = 0
    for b in sizes:
        lo, hi = max(start, offset), min(stop, offset + int(b))
        if lo < hi:
            yield lo, hi
        offset += int(b)
        if offset >= stop:
            return


def float64_total(parts: Sequence[Tensor] | Iterator[Tensor]) -> Tensor:
    """``sum(parts)`` accumulated in float64, in the given order (exact for float32 parts, see above)."""
    acc: Tensor | None = None
    for part in parts:
        p = part.detach().double()
        acc = p.clone() if acc is None else acc.add_(p)
    if acc is None:
        return torch.zeros((), dtype=torch.float64)
    return acc
