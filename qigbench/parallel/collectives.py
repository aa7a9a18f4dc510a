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
import pickle
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor

from qigbench.errors import QigbenchError
from qigbench.parallel.state import TIMEOUT_ENV, active, control_group, cpu_group, cuda_group, current_place, world

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


def _wait(op: str, work: Any) -> None:
    try:
        work.wait()
    except RuntimeError as err:  # gloo / NCCL errors (DistError is a RuntimeError)
        raise _fail(op, err) from err


def _reduce(t: Tensor, op: Any, name: str) -> Tensor:
    if not active():
        return t
    import torch.distributed as dist

    group = cuda_group() if t.device.type == "cuda" else None
    out = t.detach().clone().contiguous()
    host = out if group is not None else out.cpu()  # without NCCL, through gloo on the host
    opts = dist.AllreduceOptions()
    opts.reduceOp = op
    _wait(name, (group or cpu_group()).allreduce([host], opts))
    return host if host is out else host.to(t.device)


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


def _allgather_same(t: Tensor, op: str, group: Any = None) -> list[Tensor]:
    """Every rank's ``t`` (same shape and dtype on every rank, on the host), in rank order."""
    parts = [[torch.empty_like(t) for _ in range(world().size)]]
    _wait(op, (group or cpu_group()).allgather(parts, [t.contiguous()]))
    return parts[0]


def _to_bytes(obj: Any) -> Tensor:
    return torch.frombuffer(bytearray(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)), dtype=torch.uint8)


def _from_bytes(t: Tensor) -> Any:
    return pickle.loads(t.numpy().tobytes())


def gather_objects(obj: T) -> list[T]:
    """Every rank's ``obj`` in rank order (``[obj]`` in one process); picklable objects only."""
    if not active():
        return [obj]
    data = _to_bytes(obj)
    sizes = [int(n) for n in _allgather_same(torch.tensor([data.numel()], dtype=torch.int64), "all_gather")]
    padded = torch.zeros(max(sizes), dtype=torch.uint8)
    padded[: data.numel()] = data
    parts = _allgather_same(padded, "all_gather_object")
    return [_from_bytes(p[:n]) for p, n in zip(parts, sizes, strict=True)]


def gather_to_main(obj: T) -> list[T] | None:
    """Every rank's ``obj`` on rank 0, in rank order (``None`` on the other ranks; ``[obj]`` in one
    process): e.g. the ranks' propagation streams for rank 0's checkpoint."""
    if not active():
        return [obj]
    import torch.distributed as dist

    w = world()
    data = _to_bytes(obj)
    sizes = [int(n) for n in _allgather_same(torch.tensor([data.numel()], dtype=torch.int64), "gather")]
    padded = torch.zeros(max(sizes), dtype=torch.uint8)
    padded[: data.numel()] = data
    outputs = [[torch.empty_like(padded) for _ in range(w.size)]] if w.is_main else []
    opts = dist.GatherOptions()
    opts.rootRank = 0
    _wait("gather_object", cpu_group().gather(outputs, [padded], opts))
    if not w.is_main:
        return None
    return [_from_bytes(p[:n]) for p, n in zip(outputs[0], sizes, strict=True)]


def all_gather_rows(t: Tensor) -> Tensor:
    """The ranks' ``t`` concatenated along dim 0 in rank order (leading sizes may differ): with
    contiguous shards this is the tensor one process would hold, bit for bit."""
    if not active():
        return t
    sizes = [int(n) for n in _allgather_same(torch.tensor([int(t.shape[0])], dtype=torch.int64), "all_gather")]
    host = t.detach().cpu()
    padded = host.new_zeros((max(sizes), *host.shape[1:]))
    padded[: host.shape[0]] = host
    parts = _allgather_same(padded, "all_gather")
    return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)], dim=0).to(t.device)


def broadcast_object(obj: T, src: int = 0, group: Any = None) -> T:
    """Rank ``src``'s ``obj`` on every rank (``obj`` in one process)."""
    if world().size <= 1:
        return obj
    import torch.distributed as dist

    pg = group or cpu_group()
    opts = dist.BroadcastOptions()
    opts.rootRank = src
    data = _to_bytes(obj) if world().rank == src else torch.zeros(0, dtype=torch.uint8)
    size = torch.tensor([data.numel()], dtype=torch.int64)
    _wait("broadcast", pg.broadcast([size], opts))
    buffer = data if world().rank == src else torch.zeros(int(size[0]), dtype=torch.uint8)
    _wait("broadcast", pg.broadcast([buffer], opts))
    return obj if world().rank == src else _from_bytes(buffer)


def broadcast_tensor(t: Tensor, src: int) -> Tensor:
    """Rank ``src``'s ``t`` on every rank (exact; ``t`` itself in one process). Every rank passes a
    tensor of the same shape and dtype: the others' values are overwritten."""
    if not active():
        return t
    import torch.distributed as dist

    group = cuda_group() if t.device.type == "cuda" else None
    out = t.detach().contiguous()
    host = out if group is not None else out.cpu()
    opts = dist.BroadcastOptions()
    opts.rootRank = src
    _wait("broadcast_tensor", (group or cpu_group()).broadcast([host], opts))
    return host if host is out else host.to(t.device)


def barrier(patient: bool = False) -> None:
    """Wait for every rank; ``patient``: on the control group, whose timeout is days (for waiting
    while rank 0 builds a model or a calibration set, which may take longer than any collective)."""
    if world().size <= 1:
        return
    _wait("barrier", (control_group() if patient else cpu_group()).barrier())


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
    """Rank 0 runs the block first (e.g. builds a cache entry), the others after it finished (they
    wait on the control group: building a model may take longer than the collective timeout)."""
    if world().size <= 1:
        yield
        return
    if not world().is_main:
        barrier(patient=True)
        yield
        return
    try:
        yield
    finally:
        barrier(patient=True)


def column_mean(rows: Tensor) -> Tensor:
    """``rows.mean(dim=0)`` over the rows of every rank (exactly ``rows.mean(dim=0)`` in one process)."""
    if not active():
        return rows.mean(dim=0)
    return all_reduce_sum(rows.sum(dim=0)) / total(int(rows.shape[0]))
