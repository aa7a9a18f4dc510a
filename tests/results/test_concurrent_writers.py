"""Several writer processes on one file (as pytest-xdist workers do) lose and duplicate nothing."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from qigbench.results import ResultRow, ResultsStore

N_PROC, PER_PROC, STRIDE = 4, 50, 25  # process p writes keys [p*25, p*25+50): neighbours overlap by 25


def _keys(p: int) -> range:
    return range(p * STRIDE, p * STRIDE + PER_PROC)


def _writer(db: str, p: int, on_conflict: str, barrier: Any, out: Any) -> None:
    store = ResultsStore(db)  # each process opens its own connection
    barrier.wait()
    written = 0
    for k in _keys(p):  # one transaction per row: maximal lock contention
        row = ResultRow(
            model="tiny",
            method=f"m{k % 3}",
            format="W3A16",
            config_hash="h",
            task=f"t{k}",
            metric="accuracy",
            value=float(p),
            run_id=f"proc{p}",
        )
        written += store.record(row, on_conflict=on_conflict)  # type: ignore[arg-type]
    out.put((p, written))


@pytest.mark.parametrize("on_conflict", ["replace", "skip"])
def test_concurrent_processes_lose_and_duplicate_nothing(tmp_path: Path, on_conflict: str) -> None:
    db = str(tmp_path / "r.db")
    ResultsStore(db).close()
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(N_PROC), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(db, p, on_conflict, barrier, out)) for p in range(N_PROC)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    written = dict(out.get(timeout=5) for _ in range(N_PROC))
    assert all(n >= 0 for n in written.values())

    expected = {k for p in range(N_PROC) for k in _keys(p)}
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT task, value, run_id FROM results").fetchall()
    tasks = [t for t, _, _ in rows]
    assert len(tasks) == len(set(tasks)), "duplicated rows"
    assert {int(t[1:]) for t in tasks} == expected, "lost rows"
    for task, value, run_id in rows:  # every surviving value came from a process that wrote that key
        k = int(task[1:])
        assert int(value) in {p for p in range(N_PROC) if k in _keys(p)}
        assert run_id == f"proc{int(value)}"
    if on_conflict == "skip":  # each key written exactly once in total
        assert sum(written.values()) == len(expected)
    else:  # every attempt wrote (insert or replace)
        assert sum(written.values()) == N_PROC * PER_PROC
