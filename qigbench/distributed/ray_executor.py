"""``--executor ray``: each job one Ray task, on a running cluster or a local one.

The cluster comes from ``--ray-address``, else ``RAY_ADDRESS`` (what ``ray start --head`` prints),
else Ray starts a local one. Each task asks for one GPU when the run is on GPU (Ray then sets its
``CUDA_VISIBLE_DEVICES``) and ``cpus_per_job`` CPUs, and is retried by Ray when its worker process
or node dies (``max_retries``); an exception raised by the job itself is not retried (it would
raise again) and is reported with the job's log. Ray reuses worker processes, so a worker that
runs two jobs of one model keeps its fp model loaded (:func:`qigbench.distributed.jobs.execute_job`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from typing import Any

from qigbench.distributed.executor import JobEvent, Target, require
from qigbench.distributed.jobs import JobSpec, execute_job


class RayExecutor:
    name = "ray"

    def __init__(
        self,
        device: str,
        *,
        address: str | None = None,
        num_cpus: int | None = None,
        cpus_per_job: int = 1,
        gpus_per_job: float | None = None,
        memory_gb: float | None = None,
        max_retries: int = 2,
        target: Target = execute_job,
    ) -> None:
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.num_cpus = num_cpus
        self.on_gpu = device.startswith("cuda")
        self.gpus_per_job = gpus_per_job if gpus_per_job is not None else (1.0 if self.on_gpu else 0.0)
        self.cpus_per_job = cpus_per_job
        self.memory_gb = memory_gb
        self.max_retries = max_retries
        ranks = int(self.gpus_per_job) if self.gpus_per_job >= 2 else 1
        if not self.on_gpu and gpus_per_job:  # CPU runs (tests): N gloo ranks, no GPU asked of Ray
            ranks, self.gpus_per_job = max(1, int(gpus_per_job)), 0.0
        self.ranks = ranks
        if ranks > 1 and target is execute_job:
            from qigbench.distributed.ranks import RankedJob

            target = RankedJob(ranks)
        self.target = target
        self._slots = 1

    @property
    def slots(self) -> int:
        return self._slots

    def task_options(self, job: JobSpec) -> dict[str, Any]:
        """The resources one job's task asks Ray for."""
        gpus = self.gpus_per_job
        if self.ranks > 1:
            from qigbench.distributed.ranks import calibrates

            gpus = gpus if calibrates(job) else min(gpus, 1.0)  # the fp and RTN rows run in one process
        opts: dict[str, Any] = {
            "num_cpus": self.cpus_per_job,
            "num_gpus": float(gpus),
            "max_retries": self.max_retries,
            "retry_exceptions": False,
            "name": job.job_id,
        }
        if self.memory_gb:
            opts["memory"] = int(self.memory_gb * 2**30)
        return opts

    def describe(self, jobs: Sequence[JobSpec]) -> str:
        where = self.address or f"a local Ray instance (ray.init(num_cpus={self.num_cpus}))"
        lines = [f"Ray cluster: {where}; {len(jobs)} tasks, one per configuration:"]
        lines += [f"  {j.job_id}: @ray.remote({_kwargs(self.task_options(j))})" for j in jobs]
        if self.ranks > 1 and jobs:
            from qigbench.distributed.ranks import example_command

            lines.append(f"each task runs its job on {self.ranks} ranks in the GPUs Ray gives it (fp and RTN rows: "
                         f"one process): {example_command(list(jobs), self.ranks)}")
        return "\n".join(lines)

    def _init(self, ray: Any) -> None:
        if ray.is_initialized():
            return
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if self.address:
            kwargs["address"] = self.address
        elif self.num_cpus is not None:
            kwargs["num_cpus"] = self.num_cpus
        ray.init(**kwargs)

    def run(self, jobs: Sequence[JobSpec]) -> Iterator[JobEvent]:
        ray = require("ray")
        self._init(ray)
        total = ray.cluster_resources()
        per = "GPU" if self.gpus_per_job else "CPU"
        need = self.gpus_per_job or self.cpus_per_job
        self._slots = max(1, int(total.get(per, 1) // max(need, 1e-9)))
        task = ray.remote(self.target)
        pinned = [dataclasses.replace(j, options=j.options.with_(device="cuda")) if self.on_gpu else j for j in jobs]
        refs = {task.options(**self.task_options(j)).remote(j): j for j in pinned}
        for job in pinned:
            yield JobEvent("started", job, detail="Ray (queued until a worker is free)")
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=10.0)
            for ref in ready:
                job = refs.pop(ref)
                try:
                    yield JobEvent("done", job, record=ray.get(ref))
                except ray.exceptions.RayTaskError as err:  # the job raised
                    cause = err.cause if getattr(err, "cause", None) is not None else err
                    yield JobEvent("failed", job, detail=f"{type(cause).__name__}: {cause}")
                except ray.exceptions.RayError as err:  # worker / node lost more often than max_retries
                    yield JobEvent(
                        "failed", job, detail=f"{type(err).__name__} after {self.max_retries} retries: {err}"
                    )


def _kwargs(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in options.items())
