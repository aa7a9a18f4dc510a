"""The driver: the one process that writes the results store while jobs run elsewhere.

1. Records that finished jobs left in the run directory but the store lacks (the driver died
   after they finished) are recorded first; configurations already done (every row of their done
   mark and of each task still in the store) are skipped (``--on-conflict skip``), so a re-run of
   the same command runs only what is missing.
2. Every configuration still to run is claimed in the store (another suite process on the same db
   then skips it) and handed to the executor.
3. Each finished job's rows are recorded with its done mark in one transaction, upserted on the
   row key: a job retried after a lost worker, or recovered from its JSON record, is one row set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qigbench.distributed.executor import Executor
from qigbench.distributed.jobs import JobSpec, build_jobs, read_records, write_record
from qigbench.distributed.progress import Progress
from qigbench.matrix.cases import Matrix
from qigbench.matrix.options import SuiteOptions
from qigbench.results import ResultsStore
from qigbench.results.store import claim_owner


@dataclass
class DriverSummary:
    jobs: int = 0
    ran: int = 0
    recovered: int = 0  # recorded from a previous driver's job records
    skipped: int = 0  # already done in the store
    claimed_elsewhere: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    rows: int = 0

    def line(self) -> str:
        return (
            f"qigbench: {self.jobs} jobs: {self.ran} ran, {self.recovered} recovered from job records, "
            f"{self.skipped} already done, {self.claimed_elsewhere} claimed by another process, "
            f"{len(self.failed)} failed; {self.rows} rows recorded"
        )


def default_run_dir(db: Path) -> Path:
    """Next to the db and named after it, so re-running the same command finds its job records."""
    db = Path(db)
    return db.with_name(db.name + ".jobs")


def run_matrix(
    matrices: Sequence[Matrix],
    options: SuiteOptions,
    executor: Executor,
    run_dir: Path,
    *,
    note: str = "",
    write: Callable[[str], None] = print,
) -> DriverSummary:
    store = ResultsStore(options.db)
    owner = claim_owner()
    jobs = build_jobs(matrices, options, None, run_dir)
    summary = DriverSummary(jobs=len(jobs))
    skip = options.on_conflict == "skip"
    records = read_records(run_dir) if skip else {}
    progress = Progress(total=len(jobs), slots=1, write=write)
    pending: list[JobSpec] = []
    try:
        for job in jobs:
            if skip and store.has_config(job.key, job.tasks):  # done, and every row it had is still there
                summary.skipped += 1
                progress.recovered(job.job_id)
                continue
            record = records.get(job.job_id)
            if record is not None and record.key == job.key:
                summary.rows += store.record(record.rows, on_conflict="skip", done=job.key)
                summary.recovered += 1
                progress.recovered(job.job_id)
                write(f"recovered {job.job_id} from {job.record_path}")
                continue
            pending.append(job)
        if pending:
            run = store.start_run(device=options.device, note=note)
            claimed: list[JobSpec] = []
            for job in pending:
                held = store.claim_config(job.key, run.run_id, owner, tasks=job.tasks, ignore_done=not skip)
                if held is None:
                    claimed.append(dataclasses.replace(job, run=run))
                else:
                    summary.claimed_elsewhere += 1
                    write(f"skip {job.job_id}: {'done' if held == 'done' else f'claimed by {held}'} in {options.db}")
            progress.expect(claimed)
            progress.slots = executor.slots
            for event in executor.run(claimed):
                progress.slots = executor.slots
                if event.kind == "started":
                    progress.started(event.job, event.detail)
                elif event.kind == "retry":
                    progress.retrying(event.job, event.detail)
                elif event.kind == "failed":
                    summary.failed[event.job.job_id] = event.detail
                    progress.failed_job(event.job, event.detail, event.log)
                elif event.record is not None:
                    if not event.job.record_path.exists():  # a worker whose run dir is not shared with us
                        write_record(event.record, event.job.record_path)
                    summary.rows += store.record(event.record.rows, on_conflict=options.on_conflict, done=event.job.key)
                    summary.ran += 1
                    progress.finished(event.job, event.record)
    finally:
        store.release_claims(owner)
        store.close()
    write(summary.line())
    return summary
