"""A job that takes N GPUs: its configuration is calibrated data-parallel by N torchrun ranks.

``qigbench run --gpus-per-job N`` hands every executor the same target, :class:`RankedJob`: it
writes the job's spec next to its record, launches

    python -m torch.distributed.run --standalone --nproc-per-node N -m qigbench.distributed.ranks SPEC

in the devices the executor pinned (the pool's ``CUDA_VISIBLE_DEVICES``, Ray's ``num_gpus=N``,
SLURM's ``--gpus-per-node N``), waits, and returns the record rank 0 wrote. Rank 0 runs the job as
a one-GPU job would (calibrate, evaluate, write ``jobs/<job>.json`` and ``logs/<job>.log``); the
other ranks follow its calibration (:mod:`qigbench.parallel.follow`). torchrun's own output goes
to ``logs/<job>.torchrun.log``. On ``--device cpu`` (this project's test machines) N gloo ranks.
"""

from __future__ import annotations

import os
import pickle
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from qigbench.distributed.jobs import JobError, JobRecord, JobSpec, execute_job, read_record


def spec_path(spec: JobSpec) -> Path:
    return Path(spec.run_dir) / "specs" / f"{spec.job_id}.pkl"


def torchrun_command(spec: JobSpec, ranks: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
            "-m", "qigbench.distributed.ranks", str(spec_path(spec))]


def calibrates(spec: JobSpec) -> bool:
    """Whether the job has a calibration to share out (not the fp row, not a data-free method such
    as RTN: those run in one process, the other GPUs would only wait)."""
    if spec.case.is_fp:
        return False
    from qigbench.engine.method import get_method

    return bool(get_method(spec.case.method, dict(spec.case.options)).needs_calibration)


def example_command(jobs: list[JobSpec] | tuple[JobSpec, ...], ranks: int) -> str:
    """What a calibrating job of ``jobs`` launches, for ``--dry-run``."""
    job = next((j for j in jobs if calibrates(j)), jobs[0])
    return shlex.join(torchrun_command(job, ranks))


@dataclass(frozen=True)
class RankedJob:
    """The executors' target for an N-GPU job (picklable: Ray and submitit ship it to the node)."""

    ranks: int

    def __call__(self, spec: JobSpec) -> JobRecord:
        if not calibrates(spec):  # the fp row, RTN: one process
            return execute_job(spec)
        path = spec_path(spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(pickle.dumps(spec))
        os.replace(tmp, path)
        log = Path(spec.run_dir) / "logs" / f"{spec.job_id}.torchrun.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        if spec.record_path.exists() and spec.attempt > 0:
            spec.record_path.unlink()  # a retry must not return the record of the attempt it replaces
        with log.open("a") as out:
            out.write(f"$ {shlex.join(torchrun_command(spec, self.ranks))}\n")
            out.flush()
            code = subprocess.run(torchrun_command(spec, self.ranks), stdout=out, stderr=subprocess.STDOUT).returncode
        if code != 0 or not spec.record_path.exists():
            tail = log.read_text()[-2000:]
            raise JobError(f"job {spec.job_id} on {self.ranks} ranks failed (torchrun exit code {code}); "
                           f"log {spec.log_path}, torchrun's {log}:\n{tail}")
        return read_record(spec.record_path)


def main(argv: list[str] | None = None) -> int:
    """One rank of an N-GPU job (what :func:`torchrun_command` launches)."""
    from qigbench import parallel
    from qigbench.pipeline import quantize

    args = sys.argv[1:] if argv is None else argv
    spec: JobSpec = pickle.loads(Path(args[0]).read_bytes())
    world = parallel.init_from_env(spec.options.device)
    try:
        if not world.is_main:
            return parallel.follow({"quantize": quantize})
        parallel.lead()
        try:
            execute_job(spec)
        finally:
            parallel.release()
        return 0
    finally:
        parallel.shutdown()


if __name__ == "__main__":
    sys.exit(main())
