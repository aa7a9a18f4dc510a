"""``qigbench run --workers N``: N worker processes on one machine, one job at a time each.

Each worker is a fresh (spawned) Python process pinned before torch starts: on GPU to one device
(``CUDA_VISIBLE_DEVICES``, round-robin over the visible ones; the job then runs on ``cuda``), on
CPU to ``cpus // N`` torch threads. With ``gpus_per_job=K`` (``--gpus-per-job K``) a worker is
pinned to K devices of its own and runs each job on K torchrun ranks
(:class:`~qigbench.distributed.ranks.RankedJob`: data-parallel calibration, one GPU per rank).
A worker keeps its session between jobs, so the driver hands an idle worker a job of the model
it last ran when there is one (its fp model and task pack stay loaded). A worker that dies mid-job
(OOM killer, SIGKILL, segfault) is replaced and the job retried up to ``max_retries`` times; a job
that raises is reported with its log and not retried (it would raise again).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from qigbench.distributed.executor import JobEvent, Target
from qigbench.distributed.jobs import JobSpec, execute_job


def _worker_main(conn: Connection, gpu: str | None, threads: int, target: Target) -> None:
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu  # before torch sees CUDA
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    import torch

    torch.set_num_threads(threads)
    while True:
        spec = conn.recv()
        if spec is None:
            return
        try:
            conn.send(("done", target(spec)))
        except BaseException as err:  # report everything; the driver decides
            conn.send(("failed", f"{type(err).__name__}: {err}", traceback.format_exc()))


@dataclass
class _Slot:
    index: int
    gpu: str | None
    process: Any = None
    conn: Connection | None = None
    job: JobSpec | None = None
    model: str | None = None
    jobs_run: int = field(default=0)

    @property
    def where(self) -> str:
        pin = f"CUDA_VISIBLE_DEVICES={self.gpu}" if self.gpu is not None else "cpu"
        return f"worker {self.index} ({pin}, pid {self.process.pid if self.process else '-'})"


class PoolExecutor:
    name = "workers"

    def __init__(
        self,
        workers: int,
        device: str,
        *,
        max_retries: int = 2,
        gpus: Sequence[str] | None = None,
        target: Target = execute_job,
        gpus_per_job: int = 1,
    ) -> None:
        from qigbench.distributed.jobs import JobError
        from qigbench.distributed.ranks import RankedJob

        self.workers = max(1, workers)
        self.device = device
        self.max_retries = max_retries
        self.per_job = max(1, gpus_per_job)
        self.target = RankedJob(self.per_job) if self.per_job > 1 and target is execute_job else target
        self.on_gpu = device.startswith("cuda")
        self.gpus = list(gpus) if gpus is not None else (_visible_gpus() if self.on_gpu else [])
        if self.on_gpu and not self.gpus:
            raise JobError("--workers with --device cuda found no GPU; check nvidia-smi or run with --device cpu")
        if self.on_gpu and self.per_job > 1 and self.workers * self.per_job > len(self.gpus):
            raise JobError(
                f"{self.workers} workers x {self.per_job} GPUs per job need {self.workers * self.per_job} GPUs; "
                f"{len(self.gpus)} are visible ({','.join(self.gpus)}): use --workers {len(self.gpus) // self.per_job}"
            )
        self.threads = max(1, (os.cpu_count() or 1) // (self.workers * self.per_job))

    @property
    def slots(self) -> int:
        return self.workers

    def _slot(self, i: int) -> _Slot:
        if not self.on_gpu:
            return _Slot(i, None)
        if self.per_job > 1:  # K devices of its own
            return _Slot(i, ",".join(self.gpus[i * self.per_job : (i + 1) * self.per_job]))
        return _Slot(i, self.gpus[i % len(self.gpus)])

    def describe(self, jobs: Sequence[JobSpec]) -> str:
        lines = [f"{self.workers} worker processes on this machine, one job at a time each:"]
        ranked = ""
        if self.per_job > 1:
            from qigbench.distributed.ranks import example_command

            example = example_command(list(jobs), self.per_job) if jobs else ""
            ranked = f", each job on {self.per_job} torchrun ranks ({'gloo, CPU' if not self.on_gpu else 'NCCL'})"
        for i in range(self.workers):
            s = self._slot(i)
            pin = f"CUDA_VISIBLE_DEVICES={s.gpu}, device cuda" if s.gpu is not None else f"{self.threads} CPU threads"
            lines.append(f"  worker {i}: {pin}{ranked}")
        if self.per_job > 1 and jobs:
            lines.append(f"  a calibrating job runs (fp and RTN rows: one process): {example}")
        models = sorted({j.case.model for j in jobs})
        lines.append(f"{len(jobs)} jobs over {len(models)} model(s) ({', '.join(models)}); an idle worker takes a "
                     f"job of the model it has loaded first; a dead worker's job is retried up to {self.max_retries}x")
        return "\n".join(lines)

    def _start(self, slot: _Slot) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        slot.process = ctx.Process(
            target=_worker_main, args=(child, slot.gpu, self.threads, self.target), name=f"qigbench-worker-{slot.index}"
        )
        slot.process.start()
        child.close()
        slot.conn, slot.model, slot.job = parent, None, None

    def _pinned(self, job: JobSpec) -> JobSpec:
        if self.on_gpu:  # the worker sees one device, as cuda:0
            return dataclasses.replace(job, options=job.options.with_(device="cuda"))
        return job

    def run(self, jobs: Sequence[JobSpec]) -> Iterator[JobEvent]:
        queue = [self._pinned(j) for j in jobs]
        slots = [self._slot(i) for i in range(min(self.workers, len(queue)))]
        for slot in slots:
            self._start(slot)
        try:
            while queue or any(s.job is not None for s in slots):
                for slot in slots:
                    if slot.job is None and queue:
                        pick = next((j for j in queue if j.case.model == slot.model), queue[0])
                        queue.remove(pick)
                        slot.job, slot.model = pick, pick.case.model
                        assert slot.conn is not None
                        slot.conn.send(pick)
                        yield JobEvent("started", pick, detail=slot.where)
                busy = [s for s in slots if s.job is not None]
                ready = wait([s.conn for s in busy if s.conn] + [s.process.sentinel for s in busy], timeout=5.0)
                for slot in busy:
                    job = slot.job
                    assert job is not None and slot.conn is not None
                    if slot.conn in ready or slot.conn.poll():
                        try:
                            message = slot.conn.recv()
                        except (EOFError, OSError):
                            message = None
                        if message is not None:
                            slot.job = None
                            if message[0] == "done":
                                yield JobEvent("done", job, record=message[1])
                            else:
                                yield JobEvent("failed", job, detail=message[1])
                            continue
                    if not slot.process.is_alive():
                        code = slot.process.exitcode
                        why = f"{slot.where} died (exit code {code})"
                        slot.conn.close()
                        self._start(slot)
                        if job.attempt < self.max_retries:
                            queue.insert(0, job.retried())
                            yield JobEvent("retry", job, detail=why)
                        else:
                            yield JobEvent("failed", job, detail=f"{why}; gave up after {job.attempt + 1} attempts")
        finally:
            for slot in slots:
                try:
                    if slot.conn is not None:
                        slot.conn.send(None)
                except (BrokenPipeError, OSError):
                    pass
            for slot in slots:
                slot.process.join(timeout=30)
                if slot.process.is_alive():
                    slot.process.kill()
                    slot.process.join()


def _visible_gpus() -> list[str]:
    """The GPUs this process may use, as ids to put in a worker's ``CUDA_VISIBLE_DEVICES``."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
