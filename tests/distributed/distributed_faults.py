"""Job targets with injected faults, run by the executors in their worker processes.

Each behaves like :func:`qigbench.distributed.jobs.execute_job` except for the W3A16 job, which
raises (:func:`raising`) or has its worker SIGKILLed mid-job, once (:func:`killed_once`).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from qigbench.distributed.jobs import JobRecord, JobSpec, _worker_session, execute_job, job_log

FAULTY_FORMAT = "W3A16"


def raising(spec: JobSpec) -> JobRecord:
    if spec.case.format == FAULTY_FORMAT:
        with job_log(spec.log_path):
            raise RuntimeError(f"injected failure in {spec.job_id}")
    return execute_job(spec)


def killed_once(spec: JobSpec) -> JobRecord:
    marker = Path(spec.run_dir) / f"killed-{spec.job_id}"
    if spec.case.format == FAULTY_FORMAT and not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        with job_log(spec.log_path):
            print(f"attempt {spec.attempt}: loading the model, then this worker is SIGKILLed", flush=True)
            _worker_session(spec.options).fp_model(spec.case.model)  # mid-job: real work under way
            os.kill(os.getpid(), signal.SIGKILL)
    return execute_job(spec)
