"""Two suite processes on one db calibrate each configuration once and credit it to one run.

Before claims, both processes found the configuration missing, both calibrated it, and its rows
ended up under whichever run id wrote last (issue 11). Now a process claims a configuration in the
store before calibrating it; the other skips it.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qigbench.matrix.cases import table2
from qigbench.matrix.options import SuiteOptions
from qigbench.matrix.session import ConfigClaimed, SuiteSession
from qigbench.results import ConfigKey, ResultsStore

ROOT = Path(__file__).resolve().parents[2]
KEY = ConfigKey("tiny-qwen2vl", "rtn", "W3A16", "abc", 0)


def test_exactly_one_of_two_owners_gets_a_claim(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "r.db")
    assert store.claim_config(KEY, "run-a", "host:1:a") is None
    assert store.claim_config(KEY, "run-a", "host:1:a") is None  # re-claiming your own is fine
    assert store.claim_config(KEY, "run-b", "host:1:b") == "host:1:a"
    store.mark_config_done(KEY, "run-a")
    assert store.claims() == {}  # done drops the claim in the same transaction
    assert store.claim_config(KEY, "run-b", "host:1:b") == "done"
    assert store.claim_config(KEY, "run-b", "host:1:b", ignore_done=True) is None  # --on-conflict replace


def test_a_claim_left_by_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    import socket

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    store = ResultsStore(tmp_path / "r.db")
    assert store.claim_config(KEY, "run-a", f"{socket.gethostname()}:{int(dead.stdout)}:x") is None
    assert store.claim_config(KEY, "run-b", "other:1:b") is None
    assert store.claims() == {KEY: "other:1:b"}
    assert store.claim_config(KEY, "run-c", "far:2:c", stale_seconds=0.0) is None  # too old: taken over


def test_an_older_v1_file_gains_the_claims_table(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    ResultsStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE claims")
    store = ResultsStore(path)
    assert store.claim_config(KEY, "run-a", "h:1:a") is None


def test_second_session_skips_a_configuration_the_first_is_calibrating(tmp_path: Path) -> None:
    options = SuiteOptions(methods=("rtn",), formats=("W3A16",), tasks=("fidelity",), samples=2, db=tmp_path / "r.db")
    (case, tasks), *_ = [(c, t) for c, t in table2(options) if not c.is_fp]
    first, second = SuiteSession(options), SuiteSession(options)
    for s in (first, second):
        s.expect(case, (*tasks, "again"))  # a second task keeps the configuration open after the first
    try:
        first.measure(case, "fidelity")
        with pytest.raises(ConfigClaimed, match="being calibrated by"):
            second.measure(case, "fidelity")
        assert second.counters.calibrations == 0
        rows = first.store.rows(**vars(case.key()))
        assert {r.run_id for r in rows} == {first.run.run_id}
    finally:
        first.close()
        second.close()
    with ResultsStore(tmp_path / "r.db") as store:
        assert store.claims() == {}  # closing released what the first still held


def _run(db: Path, log: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "qigbench.cli", "run", "--methods", "rtn", "--formats", "w3a16,w4a8,w4a16"]
    cmd += ["--tasks", "fidelity", "--samples", "2", "--db", str(db), "--no-report"]
    return subprocess.Popen(cmd, cwd=db.parent, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)


def test_two_processes_on_one_db_calibrate_each_configuration_once(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    procs = [_run(db, tmp_path / f"p{i}.log") for i in range(2)]
    deadline = time.monotonic() + 300
    for p in procs:
        assert p.wait(timeout=max(1.0, deadline - time.monotonic())) == 0, (tmp_path / "p0.log").read_text()[-3000:]
    logs = [(tmp_path / f"p{i}.log").read_text() for i in range(2)]
    calibrations = [int(re.search(r"qigbench: (\d+) calibrations", text)[1]) for text in logs]  # type: ignore[index]
    assert sum(calibrations) == 3, logs
    with ResultsStore(db) as store:
        rows = store.rows()
        by_config: dict[tuple[object, ...], set[str]] = {}
        for r in rows:
            by_config.setdefault(tuple(vars(r.config_key).values()), set()).add(r.run_id)
        assert len(store.configs_done()) == 3
        assert all(len(ids) == 1 for ids in by_config.values()), by_config
        assert store.claims() == {}
