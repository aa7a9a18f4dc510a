"""The few collectives data-parallel calibration needs, each a no-op in one process.

In one process every function returns its input as it is (the very same tensor or value), so a
call site ``x = all_reduce_sum(x)`` leaves the single-process computation unchanged bit for bit.
With several ranks:

* sums (:func:`all_reduce_sum`, :func:`sum_floats`, :func:`total`) are exact in what they add but
  not in its order: rank 0's partial sum plus rank 1's is not the single process's running sum,
  so a float result agrees with one process to rounding (~1e-7 relative in float32), not bit for
  bit. Every rank receives the same bits (the backends reduce once and broadcast the result), so
  the ranks never disagree with each other.
* maxima and minima (:func:`all_reduce_max`, :func:`all_reduce_min`) and gathers
  (:func:`all_gather_rows`, :func:`gather_objects`) are exact: the same bits as one process.

A collective that fails (a rank died: its connection closed; a rank hangs: the timeout) raises
:class:`CollectiveError`, which names this rank, the operation, where the engine was and what to do.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor

from qigbench.errors import QigbenchError
from qigbench.parallel.world import TIMEOUT_ENV, active, cpu_group, current_place, world

T = TypeVar("T")


class CollectiveError(QigbenchError, RuntimeError):
    """A collective across the ranks failed: another rank died, hangs, or the ranks disagree."""


def _fail(op: str, err: BaseException) -> CollectiveError:
    w = world()
    text = str(err)
    if "timed out" in text.lower() or "timeout" in text.lower():
        why = (f"no answer from the other ranks within {w.timeout:g}s: a rank hangs or died "
               f"(raise {TIMEOUT_ENV} for a slow rank)")
    elif "closed" in text.lower() or "reset" in text.lower() or "broken pipe" in text.lower():
        why = "another rank died (its connection closed)"
    else:
        why = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    place = current_place()
    at = f" in {place}" if place else ""
    return CollectiveError(
        f"rank {w.rank} of {w.size}: {op}{at} failed: {why}. The run stops here; read the other ranks' "
        "output for the cause, and pass --resume-dir DIR to continue from the last saved unit on a rerun"
    )


def _group_for(t: Tensor) -> Any:
    return cpu_group() if t.device.type == "cpu" else None


def _reduce(t: Tensor, op: Any, name: str) -> Tensor:
    if not active():
        return t
    import torch.distributed as dist

    out = t.detach().clone().contiguous()
    try:
        dist.all_reduce(out, op=op, group=_group_for(out))
    except (RuntimeError, dist.DistError) as err:
        raise _fail(name, err) from err
    return out


def all_reduce_sum(t: Tensor) -> Tensor:
    """The sum of ``t`` over every rank (a new tensor; ``t`` itself in one process)."""
    import torch.distributed as dist

    return _reduce(t, dist.ReduceOp.SUM, "all_reduce_sum") if active() else t


def all_reduce_max(t: Tensor) -> Tensor:
    """The elementwise maximum over every rank (exact)."""
    import torch.distributed as dist

    return _reduce(t, dist.ReduceOp.MAX, "all_reduce_max") if active() else t


def all_reduce_min(t: Tensor) -> Tensor:
    """The elementwise minimum over every rank (exact)."""
    import torch.distributed as dist

    return _reduce(t, dist.ReduceOp.MIN, "all_reduce_min") if active() else t


def sum_floats(*values: float) -> tuple[float, ...]:
    """Python numbers summed over every rank, in float64 (the values themselves in one process)."""
    if not active():
        return tuple(values)
    reduced = all_reduce_sum(torch.tensor(values, dtype=torch.float64))
    return tuple(float(v) for v in reduced)


def total(n: int) -> int:
    """An integer count summed over every rank (exact)."""
    if not active():
        return n
    return int(all_reduce_sum(torch.tensor([n], dtype=torch.int64))[0])


def any_rank(flag: bool) -> bool:
    if not active():
        return flag
    return bool(all_reduce_max(torch.tensor([int(flag)], dtype=torch.int64))[0])


def all_ranks(flag: bool) -> bool:
    if not active():
        return flag
    return bool(all_reduce_min(torch.tensor([int(flag)], dtype=torch.int64))[0])


def max_int(n: int) -> int:
    if not active():
        return n
    return int(all_reduce_max(torch.tensor([n], dtype=torch.int64))[0])


def mean_over_rows(values: Tensor) -> Tensor:
    """``values.mean()`` over every element of every rank (sum and count reduced; ``values.mean()``
    itself in one process)."""
    if not active():
        return values.mean()
    s = all_reduce_sum(values.detach().double().sum().reshape(1))
    n = total(values.numel())
    return (s[0] / max(n, 1)).to(values.dtype)


def gather_objects(obj: T) -> list[T]:
    """Every rank's ``obj`` in rank order (``[obj]`` in one process); picklable objects only."""
    if not active():
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * world().size
    try:
        dist.all_gather_object(out, obj, group=cpu_group())
    except (RuntimeError, dist.DistError) as err:
        raise _fail("all_gather_object", err) from err
    return out


def all_gather_rows(t: Tensor) -> Tensor:
    """The ranks' ``t`` concatenated along dim 0 in rank order (leading sizes may differ): with
    contiguous shards this is the tensor one process would hold, bit for bit."""
    if not active():
        return t
    import torch.distributed as dist

    sizes = gather_objects(int(t.shape[0]))
    widest = max(sizes)
    padded = t.new_zeros((widest, *t.shape[1:]))
    padded[: t.shape[0]] = t
    parts = [torch.empty_like(padded) for _ in sizes]
    try:
        dist.all_gather(parts, padded.contiguous(), group=_group_for(padded))
    except (RuntimeError, dist.DistError) as err:
        raise _fail("all_gather", err) from err
    return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)], dim=0)


def broadcast_object(obj: T, src: int = 0, group: Any = None) -> T:
    """Rank ``src``'s ``obj`` on every rank (``obj`` in one process)."""
    if world().size <= 1:
        return obj
    import torch.distributed as dist

    box: list[Any] = [obj]
    try:
        dist.broadcast_object_list(box, src=src, group=group if group is not None else cpu_group())
    except (RuntimeError, dist.DistError) as err:
        raise _fail("broadcast", err) from err
    return box[0]  # type: ignore[no-any-return]


def barrier() -> None:
    if world().size <= 1:
        return
    import torch.distributed as dist

    try:
        dist.barrier(group=cpu_group())
    except (RuntimeError, dist.DistError) as err:
        raise _fail("barrier", err) from err


def tensor_digest(tensors: Sequence[Tensor]) -> str:
    """A hash of the tensors' exact bytes (dtype and shape included)."""
    digest = hashlib.blake2b(digest_size=16)
    for t in tensors:
        c = t.detach().contiguous().cpu()
        digest.update(f"{c.dtype}{tuple(c.shape)}".encode())
        if c.numel():
            digest.update(c.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_same(tensors: Sequence[Tensor], what: str) -> None:
    """Every rank must hold bitwise the same ``tensors`` (e.g. a block's quantized weights: each
    rank propagates its samples through its own copy); a difference means some statistic was not
    reduced over the ranks, and continuing would give every rank another model."""
    if not active():
        return
    digests = gather_objects(tensor_digest(tensors))
    if len(set(digests)) > 1:
        differ = [r for r, d in enumerate(digests) if d != digests[0]]
        raise CollectiveError(
            f"the ranks hold different {what} (ranks {differ} differ from rank 0): a statistic over the "
            "calibration samples was used without being all-reduced (qigbench.parallel.all_reduce_sum); "
            "this is a bug in the method, not in the data"
        )


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. builds a cache entry), the others after it finished."""
    if world().size <= 1:
        yield
        return
    if not world().is_main:
        barrier()
        yield
        return
    try:
        yield
    finally:
        barrier()


def gather_to_main(obj: T) -> list[T] | None:
    """Every rank's ``obj`` on rank 0, in rank order (``None`` on the other ranks; ``[obj]`` in one
    process): e.g. the ranks' propagation streams for rank 0's checkpoint."""
    if not active():
        return [obj]
    import torch.distributed as dist

    w = world()
    out: list[Any] | None = [None] * w.size if w.is_main else None
    try:
        dist.gather_object(obj, out, dst=0, group=cpu_group())
    except (RuntimeError, dist.DistError) as err:
        raise _fail("gather_object", err) from err
    return out


def column_mean(rows: Tensor) -> Tensor:
    """``rows.mean(dim=0)`` over the rows of every rank (exactly ``rows.mean(dim=0)`` in one process)."""
    if not active():
        return rows.mean(dim=0)
    return all_reduce_sum(rows.sum(dim=0)) / total(int(rows.shape[0]))
