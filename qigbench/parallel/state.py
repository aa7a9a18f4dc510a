"""Which rank this process is, of how many, and the process groups the collectives use.

One process (no ``torchrun``) is world size 1: :func:`world` says so without touching
``torch.distributed``, and every collective in :mod:`qigbench.parallel.collectives` returns its
input unchanged. Under ``torchrun --nproc-per-node N`` the CLI calls :func:`init_from_env` once:

* backend ``gloo`` on CPU; on CUDA also NCCL (device tensors go through NCCL, the CPU tensors
  of the engine -- streams, statistics, checkpoint gathers -- through gloo), each rank on
  ``cuda:LOCAL_RANK``;
* every collective times out after ``QIGBENCH_COLLECTIVE_TIMEOUT`` seconds (default 1800): a rank
  that hangs or dies makes the others fail with a message instead of waiting forever;
* a second gloo group with a long timeout carries the leader's requests to the followers
  (:mod:`qigbench.parallel.follow`), which may wait for hours while the leader evaluates.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from qigbench.errors import QigbenchError

#: seconds a collective waits for the other ranks before the run fails (env QIGBENCH_COLLECTIVE_TIMEOUT)
DEFAULT_TIMEOUT = 1800.0
#: how long a follower waits for the leader's next request (the leader may be evaluating)
CONTROL_TIMEOUT = datetime.timedelta(days=7)
TIMEOUT_ENV = "QIGBENCH_COLLECTIVE_TIMEOUT"


class ParallelError(QigbenchError, RuntimeError):
    """The process group cannot be set up (bad environment, unsupported command)."""


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of one calibration."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    backend: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes the record, the checkpoint and the saved model."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def describe(self) -> dict[str, Any]:
        """What goes into a run's record (not into its configuration identity)."""
        return {"world_size": self.size, "backend": self.backend, "local_world_size": self.local_size}


_SINGLE = World()
_state: dict[str, Any] = {"world": _SINGLE, "cpu_group": None, "cuda_group": None, "control_group": None}
#: inside :func:`replicated`: every rank holds the whole data, collectives are no-ops
_replicated: contextvars.ContextVar[bool] = contextvars.ContextVar("qigbench_replicated", default=False)
#: where the engine is (``block 3``), for the messages of failed collectives
_where: contextvars.ContextVar[str] = contextvars.ContextVar("qigbench_where", default="")


def world() -> World:
    """The current world (size 1 unless :func:`init_from_env` joined a process group)."""
    return _state["world"]  # type: ignore[no-any-return]


def active() -> bool:
    """Whether collectives reduce across ranks right now (several ranks, not :func:`replicated`)."""
    return world().size > 1 and not _replicated.get()


def launched_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 when not launched by torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ParallelError(f"WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} is not a number") from None


def collective_timeout() -> float:
    raw = os.environ.get(TIMEOUT_ENV)
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise ParallelError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise ParallelError(f"{TIMEOUT_ENV} must be positive, got {raw}")
    return value


#: the variables torchrun sets; hidden from the libraries once qigbench holds the ranks (below)
TORCHRUN_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
                "ROLE_RANK", "ROLE_WORLD_SIZE", "ROLE_NAME", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID",
                "TORCHELASTIC_USE_AGENT_STORE")


def init_from_env(device: str = "cpu") -> World:
    """Join the ranks torchrun describes in the environment (``WORLD_SIZE``, ``RANK``,
    ``MASTER_ADDR``...); a no-op returning world size 1 when not launched by torchrun.

    qigbench's process groups are its own: they are built on torchrun's store directly and never
    become torch.distributed's *default* group, and torchrun's variables are then removed from
    ``os.environ``. So the libraries the leader uses between calibrations (transformers' and
    compressed-tensors' saving, lmms-eval through accelerate) see one plain process: they take no
    collective of their own that the other ranks would never join."""
    if world().size > 1:
        return world()
    size = launched_world_size()
    if size <= 1:
        return world()
    import torch
    import torch.distributed as dist

    for key in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if key not in os.environ:
            raise ParallelError(
                f"WORLD_SIZE={size} but {key} is not set: launch with torchrun --nproc-per-node N -m qigbench ..."
            )
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", size))
    timeout = collective_timeout()
    on_cuda = torch.device(device).type == "cuda"
    if on_cuda:
        if not torch.cuda.is_available():
            raise ParallelError(f"--device {device} under torchrun, but this machine has no CUDA device")
        if local_rank >= torch.cuda.device_count():
            raise ParallelError(
                f"local rank {local_rank} has no GPU: {torch.cuda.device_count()} visible, "
                f"{local_size} ranks per node; use --nproc-per-node <= the GPU count"
            )
        torch.cuda.set_device(local_rank)
    delta = datetime.timedelta(seconds=timeout)
    store, _, _ = next(dist.rendezvous("env://", rank=rank, world_size=size, timeout=delta))
    cpu = dist.ProcessGroupGloo(dist.PrefixStore("qigbench/cpu/", store), rank, size, delta)
    control = dist.ProcessGroupGloo(dist.PrefixStore("qigbench/control/", store), rank, size, CONTROL_TIMEOUT)
    cuda = None
    if on_cuda:  # device tensors (Hessians, Gram blocks) through NCCL; not run on this project's machines
        options = dist.ProcessGroupNCCL.Options()
        options._timeout = delta
        cuda = dist.ProcessGroupNCCL(dist.PrefixStore("qigbench/nccl/", store), rank, size, options)
    saved = {k: os.environ.pop(k) for k in TORCHRUN_ENV if k in os.environ}
    _state.update(
        world=World(rank, size, local_rank, local_size, "nccl" if on_cuda else "gloo", timeout),
        cpu_group=cpu, cuda_group=cuda, control_group=control, store=store, env=saved,
    )
    return world()


def shutdown() -> None:
    """Leave the ranks (end of a torchrun command) and give torchrun's variables back."""
    if world().size <= 1:
        return
    os.environ.update(_state.get("env") or {})
    _state.update(world=_SINGLE, cpu_group=None, cuda_group=None, control_group=None, store=None, env={})


def cpu_group() -> Any:
    """The gloo group for CPU tensors and objects."""
    return _state["cpu_group"]


def cuda_group() -> Any:
    """The NCCL group for CUDA tensors (None on CPU runs: CUDA tensors then go through gloo)."""
    return _state.get("cuda_group")


def control_group() -> Any:
    return _state["control_group"]


@contextlib.contextmanager
def replicated() -> Iterator[None]:
    """Every rank computes the same thing on the whole data here (e.g. Q-VLM's prompt-sequential
    pre-pass): sums over samples are already complete, so collectives do nothing."""
    token = _replicated.set(True)
    try:
        yield
    finally:
        _replicated.reset(token)


@contextlib.contextmanager
def where(label: str) -> Iterator[None]:
    """Name the work in progress (``block 3``) in the message of a collective that fails."""
    token = _where.set(label)
    try:
        yield
    finally:
        _where.reset(token)


def current_place() -> str:
    return _where.get()


def rank_device(device: str) -> str:
    """The device this rank computes on: ``cuda`` / ``cuda:K`` become ``cuda:LOCAL_RANK`` under
    torchrun (one GPU per rank); anything else is unchanged."""
    w = world()
    if w.size > 1 and device.startswith("cuda"):
        return f"cuda:{w.local_rank}"
    return device
