"""Faults: a job that raises is reported with its log while the rest finish; a worker SIGKILLed
mid-job is retried and its configuration recorded once; a driver killed mid-run and restarted
runs only the configurations it had not finished."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import distributed_faults
import pytest
from distributed_helpers import child_env, digest, small_matrix

from qigbench.distributed.driver import default_run_dir, run_matrix
from qigbench.distributed.jobs import build_jobs, read_records, write_record
from qigbench.distributed.pool import PoolExecutor
from qigbench.results import ResultsStore

pytestmark = pytest.mark.slow  # worker processes load torch and the tiny model (~1 min each test)


def _run(tmp_path: Path, executor_for, target) -> tuple:  # type: ignore[no-untyped-def]
    options, matrix = small_matrix(tmp_path / "r.db")
    run_dir = default_run_dir(options.db)
    lines: list[str] = []
    summary = run_matrix([matrix], options, executor_for(run_dir, target), run_dir, write=lines.append)
    return summary, lines, options, run_dir


def _pool(run_dir: Path, target):  # type: ignore[no-untyped-def]
    return PoolExecutor(2, "cpu", target=target)


def _ray(run_dir: Path, target):  # type: ignore[no-untyped-def]
    ray = pytest.importorskip("ray", reason="pip install -e '.[distributed]'")
    from qigbench.distributed.ray_executor import RayExecutor

    ray.cloudpickle.register_pickle_by_value(distributed_faults)  # Ray workers do not see tests/
    return RayExecutor("cpu", num_cpus=2, target=target)


def _submitit(run_dir: Path, target):  # type: ignore[no-untyped-def]
    pytest.importorskip("submitit", reason="pip install -e '.[distributed]'")
    import cloudpickle

    from qigbench.distributed.slurm import SlurmExecutor, SlurmResources

    cloudpickle.register_pickle_by_value(distributed_faults)
    resources = SlurmResources(array_parallelism=2, time_min=20)
    return SlurmExecutor(run_dir, "cpu", resources, cluster="local", poll_seconds=1.0, target=target)


EXECUTORS = [pytest.param(_pool, id="workers"), pytest.param(_ray, id="ray"), pytest.param(_submitit, id="submitit")]


@pytest.fixture(autouse=True)
def _ray_down():  # type: ignore[no-untyped-def]
    yield
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        sys.modules["ray"].shutdown()


@pytest.mark.parametrize("executor_for", EXECUTORS)
def test_a_raising_job_is_reported_with_its_log_and_the_rest_finish(tmp_path: Path, executor_for) -> None:  # type: ignore[no-untyped-def]
    summary, lines, options, run_dir = _run(tmp_path, executor_for, distributed_faults.raising)
    (failed, why), *others = summary.failed.items()
    assert not others and "W3A16" in failed and "injected failure" in why, lines
    log = run_dir / "logs" / f"{failed}.log"
    assert "RuntimeError: injected failure" in log.read_text()
    assert any("FAILED" in line and str(log) in line for line in lines), lines
    assert summary.ran == 1
    with ResultsStore(options.db) as store:
        assert [k.format for k in store.configs_done()] == ["W4A8"]
        assert store.claims() == {}  # the failed configuration is free for a re-run


@pytest.mark.parametrize("executor_for", EXECUTORS)
def test_a_worker_killed_mid_job_is_retried_and_recorded_once(tmp_path: Path, executor_for) -> None:  # type: ignore[no-untyped-def]
    summary, lines, options, run_dir = _run(tmp_path, executor_for, distributed_faults.killed_once)
    assert summary.failed == {} and summary.ran == 2, lines
    killed = next(run_dir.glob("killed-*")).name.removeprefix("killed-")
    records = read_records(run_dir)
    assert records[killed].attempt == (0 if executor_for is _ray else 1)  # Ray retries the same task
    log = (run_dir / "logs" / f"{killed}.log").read_text()
    assert "then this worker is SIGKILLed" in log and "done in" in log
    rows = digest(options.db)
    assert len(rows) == 6  # 2 configurations x (kl, flip_rate, block_error), each once
    with ResultsStore(options.db) as store:
        assert len(store.configs_done()) == 2


def test_a_driver_killed_mid_run_restarts_with_only_the_missing_configurations(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    cmd = [sys.executable, "-m", "qigbench.cli", "run", "--methods", "rtn", "--formats", "w3a16,w4a8,w4a16"]
    cmd += ["--tasks", "fidelity", "--samples", "2", "--db", str(db), "--no-report", "--workers", "1"]
    out = (tmp_path / "first.log").open("w")
    driver = subprocess.Popen(
        cmd, cwd=tmp_path, env=child_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    jobs = default_run_dir(db) / "jobs"
    deadline = time.monotonic() + 600
    while not list(jobs.glob("*.json")) and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and its worker die at once (a lost node)
    driver.wait()
    finished = {p.stem for p in jobs.glob("*.json")}
    assert 1 <= len(finished) < 3, (tmp_path / "first.log").read_text()[-3000:]
    again = subprocess.run(cmd, cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    done_before = len(finished)
    assert f"3 jobs: {3 - done_before} ran" in again.stdout, again.stdout[-2000:]
    found = re.search(r"(\d+) recovered from job records, (\d+) already done", again.stdout)
    assert found and int(found[1]) + int(found[2]) == done_before, again.stdout[-2000:]
    for job_id in finished:  # none of the finished ones was started again
        assert f"started {job_id}" not in again.stdout
    assert len(digest(db)) == 9  # 3 configurations x 3 metrics, each once
    with ResultsStore(db) as store:
        assert len(store.configs_done()) == 3 and store.claims() == {}


def test_records_the_store_lacks_are_recovered_without_running(tmp_path: Path) -> None:
    """A driver that died between a job's record and the db write: the re-run records it, runs nothing."""
    options, matrix = small_matrix(tmp_path / "r.db")
    run_dir = default_run_dir(options.db)
    jobs = build_jobs([matrix], options, None, run_dir)
    with ResultsStore(options.db) as store:
        run = store.start_run(device="cpu", note="the driver that died")
    from qigbench.distributed.jobs import JobRecord

    for job in jobs:
        rows = tuple(run.row(**vars(job.key), task="fidelity", metric=m, value=0.5) for m in ("kl", "flip_rate"))
        write_record(JobRecord(job.job_id, job.key, rows, 1.0, 0.5, "node", 0), job.record_path)

    class Refuses:
        name, slots = "none", 1

        def run(self, jobs):  # type: ignore[no-untyped-def]
            assert not jobs, f"re-ran {[j.job_id for j in jobs]}"
            return iter(())

    summary = run_matrix([matrix], options, Refuses(), run_dir, write=lambda _: None)  # type: ignore[arg-type]
    assert summary.recovered == 2 and summary.ran == 0 and summary.rows == 4
    assert {r.run_id for r in ResultsStore(options.db).rows()} == {run.run_id}
    again = run_matrix([matrix], options, Refuses(), run_dir, write=lambda _: None)  # type: ignore[arg-type]
    assert again.skipped == 2 and again.rows == 0
    assert dataclasses.replace(jobs[0], attempt=1).retried().attempt == 2
