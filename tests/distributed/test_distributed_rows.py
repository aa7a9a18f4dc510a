"""The same tiny matrix run serially, on ``pytest suites -n 2``, on 2 local worker processes, on a
local Ray cluster (2 CPUs) and through submitit's local executor gives the same rows: same keys,
same values (tiny CPU runs are deterministic), no duplicate, none missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from distributed_helpers import MATRIX_ARGS, child_env, digest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # each way starts fresh worker processes (~1 min on 2 busy cores)


@pytest.fixture(scope="module")
def serial_rows(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[object, ...], float]:
    """The tiny matrix run the default way (``qigbench run``, in this process)."""
    from qigbench.cli import main

    db = tmp_path_factory.mktemp("serial") / "serial.db"
    assert main(["run", *MATRIX_ARGS, "--db", str(db), "--no-report"]) == 0
    rows = digest(db)
    assert len(rows) == 17
    return rows


def _qigbench_run(tmp_path: Path, *extra: str) -> Path:
    db = tmp_path / "r.db"
    cmd = [sys.executable, "-m", "qigbench.cli", "run", *MATRIX_ARGS, "--db", str(db), "--no-report", *extra]
    done = subprocess.run(cmd, cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "5 ran, 0 recovered" in done.stdout and "0 failed" in done.stdout, done.stdout[-3000:]
    return db


def test_worker_processes_give_the_serial_rows(tmp_path: Path, serial_rows: dict) -> None:  # type: ignore[type-arg]
    assert digest(_qigbench_run(tmp_path, "--workers", "2")) == serial_rows


def test_pytest_xdist_gives_the_serial_rows(tmp_path: Path, serial_rows: dict) -> None:  # type: ignore[type-arg]
    pytest.importorskip("xdist", reason="pip install -e '.[test]' (pytest-xdist)")
    db = tmp_path / "r.db"
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "suites" / "test_table2_main.py"), "-n", "2", "-q"]
    cmd += ["-p", "no:cacheprovider", *MATRIX_ARGS, "--db", str(db)]
    done = subprocess.run(cmd, cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "9 passed" in done.stdout, done.stdout[-3000:]  # none skipped as claimed by the other worker
    assert digest(db) == serial_rows


def test_local_ray_cluster_gives_the_serial_rows(tmp_path: Path, serial_rows: dict) -> None:  # type: ignore[type-arg]
    pytest.importorskip("ray", reason="pip install -e '.[distributed]'")
    assert digest(_qigbench_run(tmp_path, "--executor", "ray", "--ray-cpus", "2")) == serial_rows


def test_submitit_local_executor_gives_the_serial_rows(tmp_path: Path, serial_rows: dict) -> None:  # type: ignore[type-arg]
    pytest.importorskip("submitit", reason="pip install -e '.[distributed]'")
    extra = ["--executor", "slurm", "--submitit-cluster", "local", "--array-parallelism", "2"]
    db = _qigbench_run(tmp_path, *extra)
    assert digest(db) == serial_rows
    logs = sorted((tmp_path / "r.db.jobs" / "logs").glob("*.log"))
    assert len(logs) == 5 and all("done in" in p.read_text() for p in logs)
    assert list((tmp_path / "r.db.jobs" / "submitit").glob("*_log.out"))  # submitit's own per-job logs
