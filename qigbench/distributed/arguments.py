"""The ``qigbench run`` options that pick an executor, and the command path that uses them."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from qigbench.errors import QigbenchError

if TYPE_CHECKING:  # kept out of `qigbench --help`'s imports
    from qigbench.distributed.executor import Executor
    from qigbench.matrix.cases import Matrix
    from qigbench.matrix.options import SuiteOptions

EXECUTORS = ("local", "ray", "slurm")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("distributed (one job = one configuration; the driver writes the db)")
    group.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local: this process (default), or --workers N processes; ray: Ray tasks; slurm: submitit job arrays",
    )
    group.add_argument(
        "--workers", type=int, help="N worker processes on this machine, each pinned to one GPU (or CPU share)"
    )
    group.add_argument("--ray-address", help="Ray cluster address (default $RAY_ADDRESS, else a local Ray)")
    group.add_argument("--ray-cpus", type=int, help="CPUs of a local Ray started here (default: all)")
    group.add_argument("--partition", help="SLURM partition")
    group.add_argument("--time", type=int, default=240, help="SLURM time limit per job, minutes (240)")
    group.add_argument("--gpus-per-job", type=int, help="GPUs per job (default 1 on cuda, 0 on cpu)")
    group.add_argument("--cpus-per-job", type=int, help="CPUs per job (default 8 on SLURM, 1 on Ray)")
    group.add_argument("--mem-gb", type=float, help="memory per job, GB (SLURM --mem, Ray memory)")
    group.add_argument("--array-parallelism", type=int, default=16, help="SLURM array tasks running at once (16)")
    group.add_argument("--submitit-cluster", default="slurm", help=argparse.SUPPRESS)  # "local" in tests
    group.add_argument("--max-retries", type=int, default=2, help="retries of a job whose worker died (2)")
    group.add_argument("--run-dir", type=Path, help="job records and logs (default: DB.jobs next to --db)")
    group.add_argument(
        "--dry-run", action="store_true", help="print the jobs and the resources they ask for; run nothing"
    )


def wants_jobs(args: argparse.Namespace) -> bool:
    """Whether ``qigbench run`` goes through the job driver rather than today's in-process loop."""
    return bool(args.executor != "local" or args.workers is not None or args.dry_run)


def make_executor(args: argparse.Namespace, options: SuiteOptions, run_dir: Path) -> Executor:
    if args.workers is not None and args.workers < 1:
        raise QigbenchError(f"--workers must be >= 1, got {args.workers}")
    if args.executor == "ray":
        from qigbench.distributed.ray_executor import RayExecutor

        return RayExecutor(
            options.device,
            address=args.ray_address,
            num_cpus=args.ray_cpus,
            cpus_per_job=args.cpus_per_job or 1,
            gpus_per_job=args.gpus_per_job,
            memory_gb=args.mem_gb,
            max_retries=args.max_retries,
        )
    if args.executor == "slurm":
        from qigbench.distributed.slurm import SlurmExecutor, SlurmResources

        resources = SlurmResources(
            partition=args.partition,
            time_min=args.time,
            gpus_per_job=args.gpus_per_job,
            cpus_per_job=args.cpus_per_job or 8,
            mem_gb=args.mem_gb,
            array_parallelism=args.array_parallelism,
        )
        return SlurmExecutor(
            run_dir, options.device, resources, cluster=args.submitit_cluster, max_retries=args.max_retries
        )
    from qigbench.distributed.pool import PoolExecutor

    return PoolExecutor(args.workers or 1, options.device, max_retries=args.max_retries)


def run_jobs(args: argparse.Namespace, options: SuiteOptions, matrices: Sequence[Matrix], note: str) -> int:
    """``qigbench run --executor ...``: the driver path; returns the exit code (1 when a job failed)."""
    from qigbench.distributed.driver import default_run_dir, run_matrix
    from qigbench.distributed.jobs import build_jobs

    run_dir = args.run_dir or default_run_dir(options.db)
    executor = make_executor(args, options, run_dir)
    if args.dry_run:
        jobs = build_jobs(matrices, options, None, run_dir)
        print(f"dry run: {len(jobs)} jobs (one per configuration), records and logs under {run_dir}")
        for job in jobs:
            print(f"  {job.job_id}: {', '.join(job.tasks)}")
        print(executor.describe(jobs))
        return 0
    check_ready = getattr(executor, "check_ready", None)
    if check_ready is not None:  # e.g. SLURM without srun: say so before the db or run dir is touched
        check_ready()
    summary = run_matrix(matrices, options, executor, run_dir, note=note)
    for job_id, why in summary.failed.items():
        print(f"failed: {job_id}: {why}; log {Path(run_dir) / 'logs' / (job_id + '.log')}")
    return 1 if summary.failed else 0
