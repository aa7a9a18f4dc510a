"""One job = one configuration of the matrix: calibrate it, evaluate its tasks, return its rows.

A job runs anywhere (a pool worker, a Ray worker, a SLURM node) and never opens the results store:
it returns a :class:`JobRecord` to the driver and also writes that record as JSON into the run
directory (``jobs/<job_id>.json``, written to a temporary name and renamed), so the driver can
recover finished work after its own crash. Its output goes to ``logs/<job_id>.log``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import socket
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qigbench.errors import QigbenchError
from qigbench.matrix.cases import Case, Matrix
from qigbench.matrix.options import SuiteOptions
from qigbench.results import ConfigKey, ResultRow, Run
from qigbench.results.codec import examples_from_json, examples_to_json

RECORD_VERSION = 1


class JobError(QigbenchError, RuntimeError):
    """A job record that cannot be read, or a job that could not run."""


@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs to run one configuration (picklable, no open handles)."""

    job_id: str
    case: Case
    tasks: tuple[str, ...]
    options: SuiteOptions
    run: Run | None
    run_dir: str
    attempt: int = 0

    @property
    def key(self) -> ConfigKey:
        return self.case.key()

    @property
    def log_path(self) -> Path:
        return Path(self.run_dir) / "logs" / f"{self.job_id}.log"

    @property
    def record_path(self) -> Path:
        return Path(self.run_dir) / "jobs" / f"{self.job_id}.json"

    def retried(self) -> JobSpec:
        return dataclasses.replace(self, attempt=self.attempt + 1)


@dataclass(frozen=True)
class JobRecord:
    """What a finished job hands the driver: its rows, and what it cost."""

    job_id: str
    key: ConfigKey
    rows: tuple[ResultRow, ...]
    seconds: float
    calib_seconds: float | None
    host: str
    attempt: int

    def to_json(self) -> dict[str, Any]:
        return {
            "version": RECORD_VERSION,
            "job_id": self.job_id,
            "key": vars(self.key),
            "rows": [
                {
                    **dataclasses.asdict(r),
                    "versions": dict(r.versions),
                    "config": dict(r.config),
                    "examples": examples_to_json(r.examples),
                }
                for r in self.rows
            ],
            "seconds": self.seconds,
            "calib_seconds": self.calib_seconds,
            "host": self.host,
            "attempt": self.attempt,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobRecord:
        if data.get("version") != RECORD_VERSION:
            raise JobError(f"job record version {data.get('version')!r}, expected {RECORD_VERSION}")
        return cls(
            job_id=data["job_id"],
            key=ConfigKey(**data["key"]),
            rows=tuple(ResultRow(**{**r, "examples": examples_from_json(r.get("examples", ""))}) for r in data["rows"]),
            seconds=float(data["seconds"]),
            calib_seconds=data["calib_seconds"],
            host=data["host"],
            attempt=int(data["attempt"]),
        )


def job_id(case: Case) -> str:
    """A file-name-safe id, unique per configuration (the ident plus a slice of its hash)."""
    return re.sub(r"[^A-Za-z0-9._=+-]", "_", f"{case.ident()}-{case.config_hash()[:8]}")


def build_jobs(matrices: Sequence[Matrix], options: SuiteOptions, run: Run | None, run_dir: Path) -> list[JobSpec]:
    """One job per distinct configuration and seed; a configuration two tables share runs once, with
    the union of their tasks (in first-seen order). The seed is not in the configuration hash (it is
    its own key column), so it is part of the job's key: ``--seeds 0,1,2`` is three jobs each."""
    cases: dict[tuple[str, int | None], Case] = {}
    tasks: dict[tuple[str, int | None], list[str]] = {}
    for matrix in matrices:
        for case, case_tasks in matrix:
            h = (case.config_hash(), None if case.is_fp else case.seed)
            cases.setdefault(h, case)
            have = tasks.setdefault(h, [])
            have += [t for t in case_tasks if t not in have]
    folder = str(Path(run_dir).resolve())
    return [JobSpec(job_id(c), c, tuple(tasks[h]), options, run, folder) for h, c in cases.items()]


def write_record(record: JobRecord, path: Path) -> None:
    """Atomically: a reader sees the whole record or none (tmp file + fsync + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w") as fh:
        json.dump(record.to_json(), fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_record(path: Path) -> JobRecord:
    try:
        return JobRecord.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise JobError(f"job record {path} is not readable ({err}); delete it to re-run that configuration") from err


def read_records(run_dir: Path) -> dict[str, JobRecord]:
    """The records finished jobs left in ``run_dir/jobs`` (a driver's crash recovery)."""
    folder = Path(run_dir) / "jobs"
    if not folder.is_dir():
        return {}
    return {p.stem: read_record(p) for p in sorted(folder.glob("*.json"))}


# -- running a job (in the worker) ------------------------------------------------------------
_SESSION: Any = None


def _worker_session(options: SuiteOptions) -> Any:
    """One :class:`SuiteSession` per worker process, reused by the jobs it is handed: jobs of the
    same model share its loaded fp model and task pack."""
    global _SESSION
    from qigbench.matrix.options import pin_threads
    from qigbench.matrix.session import SuiteSession

    if _SESSION is None or _SESSION.options != options:
        if _SESSION is not None:
            _SESSION.close()
        pin_threads(options)
        _SESSION = SuiteSession(options)
    return _SESSION


@contextlib.contextmanager
def job_log(path: Path) -> Iterator[None]:
    """Send the job's stdout, stderr and logging to ``path`` (appended: a retry follows its failure)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", buffering=1) as fh:
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        try:
            with contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
                yield
        except BaseException:
            fh.write(traceback.format_exc())
            raise
        finally:
            root.removeHandler(handler)


def execute_job(spec: JobSpec) -> JobRecord:
    """Calibrate ``spec.case``, evaluate each task, write and return the record (the worker side)."""
    if spec.run is None:
        raise JobError(f"job {spec.job_id} has no run to stamp its rows with; the driver sets JobSpec.run")
    with job_log(spec.log_path):
        print(f"job {spec.job_id} attempt {spec.attempt} on {socket.gethostname()} pid {os.getpid()}", flush=True)
        session = _worker_session(spec.options)
        start = time.perf_counter()
        rows: list[ResultRow] = []
        calib: float | None = None
        for task in spec.tasks:
            metrics, result = session.evaluate(spec.case, task)
            rows += session.rows(spec.case, task, metrics, result, run=spec.run)
            calib = None if result is None else result.report.seconds
            print(f"{task}: {metrics.values}", flush=True)
        record = JobRecord(
            spec.job_id,
            spec.key,
            tuple(rows),
            time.perf_counter() - start,
            calib,
            socket.gethostname(),
            spec.attempt,
        )
        write_record(record, spec.record_path)
        print(f"done in {record.seconds:.1f}s; record {spec.record_path}", flush=True)
        sys.stdout.flush()
    return record
