"""Work that does not depend on the samples, shared out over the ranks instead of repeated.

Some of a method's work is the same on every rank once the sums over samples are reduced: GPTQ's
per-linear solve (the inverse Hessian's Cholesky factor and the column sweep) reads only the
reduced Hessian and the weight. Run on every rank, it does not get faster with more ranks. So
each item goes to one rank (:func:`share_out`), that rank computes it, and
:func:`~qigbench.parallel.collectives.broadcast_tensor` hands the result to the others. The
owner runs the very computation one process runs (same inputs, same kernels), so the result is
the single process's bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence


def share_out(costs: Sequence[float], ranks: int) -> list[int]:
    """The rank that computes each item: longest item first, to the least loaded rank (ties: the
    lower rank). Deterministic, so every rank computes the same plan; one rank owns everything."""
    if ranks <= 1:
        return [0] * len(costs)
    load = [0.0] * ranks
    owner = [0] * len(costs)
    for i in sorted(range(len(costs)), key=lambda i: (-float(costs[i]), i)):
        r = min(range(ranks), key=lambda r: (load[r], r))
        owner[i] = r
        load[r] += float(costs[i])
    return owner
