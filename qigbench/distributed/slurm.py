"""``--executor slurm``: the jobs as a submitit job array on SLURM (or submitit's local executor).

One array task per configuration, at most ``array_parallelism`` running at once; submitit writes
each task's stdout / stderr under ``<run dir>/submitit/`` and our own per-job log goes to
``<run dir>/logs/``. A task that did not finish (killed, timed out, preempted, node failure:
submitit's ``UncompletedJobError``) is resubmitted, up to ``max_retries`` times, in a new array of
the ones left; a task whose job raised (``FailedJobError``) is reported with its logs, not retried.
The driver polls; it never shares the results db with the nodes (they return their rows).
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qigbench.distributed.executor import JobError, JobEvent, Target, require
from qigbench.distributed.jobs import JobSpec, execute_job


@dataclass(frozen=True)
class SlurmResources:
    partition: str | None = None
    time_min: int = 240
    gpus_per_job: int | None = None  # None: 1 on GPU, 0 on CPU
    cpus_per_job: int = 8
    mem_gb: float | None = None
    array_parallelism: int = 16
    job_name: str = "qigbench"


class SlurmExecutor:
    name = "slurm"

    def __init__(
        self,
        run_dir: Path,
        device: str,
        resources: SlurmResources = SlurmResources(),
        *,
        cluster: str = "slurm",
        max_retries: int = 2,
        poll_seconds: float = 5.0,
        target: Target = execute_job,
    ) -> None:
        self.folder = Path(run_dir).resolve() / "submitit"
        self.on_gpu = device.startswith("cuda")
        self.resources = resources
        self.cluster = cluster
        self.max_retries = max_retries
        self.poll_seconds = poll_seconds
        self.target = target

    @property
    def slots(self) -> int:
        return self.resources.array_parallelism

    @property
    def gpus(self) -> int:
        r = self.resources
        return r.gpus_per_job if r.gpus_per_job is not None else (1 if self.on_gpu else 0)

    def parameters(self) -> dict[str, Any]:
        """submitit's AutoExecutor parameters (``slurm_*`` ones are ignored off SLURM)."""
        r = self.resources
        params: dict[str, Any] = {
            "name": r.job_name,
            "timeout_min": r.time_min,
            "gpus_per_node": self.gpus,
            "cpus_per_task": r.cpus_per_job,
            "tasks_per_node": 1,
            "nodes": 1,
            "slurm_array_parallelism": r.array_parallelism,
        }
        if r.partition:
            params["slurm_partition"] = r.partition
        if r.mem_gb:
            params["mem_gb"] = r.mem_gb
        return params

    def describe(self, jobs: Sequence[JobSpec]) -> str:
        """The sbatch script submitit writes for this array (rendered by submitit itself)."""
        require("submitit")
        from submitit.slurm.slurm import _make_sbatch_string

        r = self.resources
        slurm: dict[str, Any] = {
            "job_name": r.job_name,
            "time": r.time_min,
            "gpus_per_node": self.gpus,
            "cpus_per_task": r.cpus_per_job,
            "ntasks_per_node": 1,
            "nodes": 1,
            "array_parallelism": r.array_parallelism,
        }
        if r.partition:
            slurm["partition"] = r.partition
        if r.mem_gb:
            slurm["mem"] = f"{int(r.mem_gb)}GB"
        # what submitit.SlurmExecutor runs (it needs srun to be built, so a laptop renders it directly)
        command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(self.folder))])
        text = _make_sbatch_string(command=command, folder=self.folder, map_count=len(jobs), **slurm)
        header = f"{len(jobs)} jobs as one SLURM job array ({len(jobs)} tasks, {r.array_parallelism} at once); sbatch:"
        return header + "\n" + text

    def check_ready(self) -> None:
        """Fail before anything runs when SLURM is not reachable from here (submitit needs ``srun``
        on PATH, and says only ``Could not detect "srun"`` from inside the first submission)."""
        require("submitit")
        if self.cluster != "slurm" or shutil.which("srun") is not None:
            return
        raise JobError(
            "--executor slurm needs SLURM's srun and sbatch on PATH, and this machine has no srun: run the command "
            "on the cluster's login node (with the SLURM client installed, or after `module load slurm` where "
            "SLURM comes as a module); to run the jobs on this machine instead use --executor local (one process) "
            "or --workers N (N processes, one per GPU); add --dry-run to see the sbatch script without SLURM"
        )

    def run(self, jobs: Sequence[JobSpec]) -> Iterator[JobEvent]:
        self.check_ready()
        submitit = require("submitit")
        from submitit.core.utils import FailedJobError, UncompletedJobError

        executor = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
        executor.update_parameters(**self.parameters())
        queue = list(jobs)
        running: dict[Any, JobSpec] = {}
        while queue or running:
            room = self.slots - len(running) if self.cluster == "local" else len(queue)
            wave, queue = queue[:room], queue[room:]
            if wave:  # one array per wave on SLURM; the local executor runs one process per job
                handles = executor.map_array(self.target, wave) if self.cluster != "local" else [
                    executor.submit(self.target, j) for j in wave
                ]
                for handle, job in zip(handles, wave, strict=True):
                    running[handle] = job
                    yield JobEvent("started", job, detail=f"submitit job {handle.job_id}, stdout {handle.paths.stdout}")
            finished = [h for h in running if h.done()]
            if not finished:
                time.sleep(self.poll_seconds)
                continue
            for handle in finished:
                job = running.pop(handle)
                logs = f"{job.log_path} (submitit: {handle.paths.stderr})"
                try:
                    yield JobEvent("done", job, record=handle.result())
                except FailedJobError as err:  # the job raised: not worth resubmitting
                    yield JobEvent("failed", job, detail=_first_line(err), log=logs)
                except UncompletedJobError as err:
                    why = f"submitit job {handle.job_id} did not finish ({handle.state}): {_first_line(err)}"
                    if job.attempt < self.max_retries:
                        queue.append(job.retried())
                        yield JobEvent("retry", job, detail=why)
                    else:
                        gave_up = f"{why}; gave up after {job.attempt + 1} attempts"
                        yield JobEvent("failed", job, detail=gave_up, log=logs)


def _first_line(err: BaseException) -> str:
    """The exception line of submitit's message (it wraps the job's traceback and log paths)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    raised = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Interrupt)\b", line)]
    return (raised or lines or [type(err).__name__])[-1][:300]
