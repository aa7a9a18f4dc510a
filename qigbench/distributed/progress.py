"""What a person follows while a distributed matrix runs: done / running / failed, logs, ETA.

The ETA is the mean cost of the finished jobs of the same method (calibration dominates a job;
methods differ by orders of magnitude, e.g. RTN vs leave-one-out QIG), or of all finished jobs
when none of that method finished yet, times the jobs left, divided by the parallel slots.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import mean

from qigbench.distributed.jobs import JobRecord, JobSpec


def _duration(seconds: float) -> str:
    whole = round(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


@dataclass
class Progress:
    total: int
    slots: int
    write: Callable[[str], None] = print
    done: set[str] = field(default_factory=set)
    running: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)
    cost: dict[str, list[float]] = field(default_factory=dict)  # method -> seconds of finished jobs
    pending_methods: dict[str, str] = field(default_factory=dict)  # job_id -> method, not finished

    def expect(self, jobs: list[JobSpec]) -> None:
        self.pending_methods.update({j.job_id: j.case.method for j in jobs})

    def status(self) -> str:
        line = f"[{len(self.done)}/{self.total} done, {len(self.running)} running, {len(self.failed)} failed]"
        eta = self.eta()
        return line + (f" ETA {_duration(eta)}" if eta is not None else "")

    def eta(self) -> float | None:
        if not self.cost:
            return None
        overall = mean(s for costs in self.cost.values() for s in costs)
        left = [mean(self.cost[m]) if m in self.cost else overall for m in self.pending_methods.values()]
        return sum(left) / max(1, min(self.slots, len(left) or 1))

    def started(self, job: JobSpec, where: str = "") -> None:
        self.running.add(job.job_id)
        again = f" (attempt {job.attempt + 1})" if job.attempt else ""
        self.write(f"{self.status()} started {job.job_id}{again}{f' on {where}' if where else ''}; log {job.log_path}")

    def finished(self, job: JobSpec, record: JobRecord) -> None:
        self.running.discard(job.job_id)
        self.done.add(job.job_id)
        self.pending_methods.pop(job.job_id, None)
        self.cost.setdefault(job.case.method, []).append(record.seconds)
        calib = "" if record.calib_seconds is None else f", calibration {record.calib_seconds:.1f}s"
        self.write(f"{self.status()} done {job.job_id}: {len(record.rows)} rows in {record.seconds:.1f}s{calib}")

    def retrying(self, job: JobSpec, why: str) -> None:
        self.running.discard(job.job_id)
        self.write(f"{self.status()} retry {job.job_id}: {why}; log {job.log_path}")

    def failed_job(self, job: JobSpec, why: str, log: str = "") -> None:
        self.running.discard(job.job_id)
        self.pending_methods.pop(job.job_id, None)
        self.failed[job.job_id] = why
        self.write(f"{self.status()} FAILED {job.job_id}: {why}; log {log or job.log_path}")

    def recovered(self, job_id: str) -> None:
        self.done.add(job_id)
        self.pending_methods.pop(job_id, None)
