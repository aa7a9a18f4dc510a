"""Issue 20, items 2, 3 and 11 (the store's part): the results store is trusted only for what is in it.

* A rerun trusts the rows, not the done mark: delete some of a configuration's rows and rerun
  ``qigbench run`` (or the job driver): what is missing is measured again. Before, the done mark
  said "already in db, skipped" and the rows stayed missing.
* Readers never write: ``qigbench report`` / ``qigbench check`` re-created dropped tables without a
  word, wrote a schema into an empty file, and a truncated file was a ``DatabaseError`` traceback.
  Now they open the file read-only, leave it byte for byte as it was and name what is wrong.
* ``report --out`` on a path that cannot be written: a message naming the fix, not a traceback.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from qigbench.cli import main
from qigbench.distributed.driver import run_matrix
from qigbench.distributed.executor import JobEvent
from qigbench.distributed.jobs import JobRecord, JobSpec
from qigbench.matrix.cases import table2
from qigbench.matrix.options import SuiteOptions
from qigbench.results import ResultsStore

BASELINE = Path(__file__).resolve().parents[2] / "reports" / "baseline" / "baseline.json"


def _rows(db: Path) -> set[tuple[str, str, str]]:
    with ResultsStore(db) as store:
        return {(r.method, r.task, r.metric) for r in store.rows()}


def _delete(db: Path, where: str) -> int:
    conn = sqlite3.connect(db)
    n = conn.execute(f"DELETE FROM results WHERE {where}").rowcount
    conn.commit()
    conn.close()
    return n


# -- a rerun trusts the rows ------------------------------------------------------------------
RUN = ["run", "--model", "tiny-llama", "--methods", "rtn", "--formats", "w4a16", "--tasks", "fidelity",
       "--samples", "1", "--limit", "2", "--no-report", "--device", "cpu"]


def test_a_rerun_measures_the_rows_that_were_deleted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "r.db"
    assert main([*RUN, "--db", str(db)]) == 0
    full = _rows(db)
    assert {("rtn", "fidelity", m) for m in ("kl", "flip_rate", "block_error")} <= full
    skipped = f"already in {db}, skipped"
    assert main([*RUN, "--db", str(db)]) == 0  # everything there: skipped
    assert skipped in capsys.readouterr().out and _rows(db) == full

    assert _delete(db, "metric = 'kl'") == 1  # one (task, metric) row of the configuration
    assert main([*RUN, "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert skipped not in out and "kl=" in out  # was: "already in db, skipped", kl missing for good
    assert _rows(db) == full

    assert _delete(db, "1") == 3  # all of its rows
    assert main([*RUN, "--db", str(db)]) == 0
    assert skipped not in capsys.readouterr().out and _rows(db) == full


class _Recording:
    """An in-process executor: hands back rows for every job it is given and remembers which."""

    name = "recording"
    slots = 1

    def __init__(self) -> None:
        self.ran: list[str] = []

    def describe(self, jobs: Sequence[JobSpec]) -> str:
        return ""

    def run(self, jobs: Sequence[JobSpec]) -> Iterator[JobEvent]:
        for job in jobs:
            self.ran.append(job.job_id)
            assert job.run is not None
            rows = tuple(job.run.row(**vars(job.key), task=t, metric=m, value=0.25)
                         for t in job.tasks for m in ("kl", "flip_rate"))
            yield JobEvent("done", job, JobRecord(job.job_id, job.key, rows, 0.0, None, "here", 0))


def test_the_job_driver_reruns_a_configuration_whose_rows_were_deleted(tmp_path: Path) -> None:
    options = SuiteOptions(methods=("rtn",), formats=("W3A16", "W4A8"), tasks=("fidelity",), samples=2,
                           db=tmp_path / "r.db", verify_device=False)
    matrix = table2(options)
    first = _Recording()
    run_matrix([matrix], options, first, tmp_path / "jobs-1", write=lambda line: None)
    assert len(first.ran) == 2
    again = _Recording()
    run_matrix([matrix], options, again, tmp_path / "jobs-2", write=lambda line: None)
    assert again.ran == []  # every row there: nothing to do
    _delete(options.db, "format = 'W4A8' AND metric = 'kl'")
    third = _Recording()
    run_matrix([matrix], options, third, tmp_path / "jobs-3", write=lambda line: None)
    assert len(third.ran) == 1 and "W4A8" in third.ran[0]  # was: "already done", its kl row missing
    assert ("rtn", "fidelity", "kl") in _rows(options.db)
    with ResultsStore(options.db) as store:
        assert len([r for r in store.rows() if r.metric == "kl"]) == 2


# -- readers never write ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("db") / "good.db"
    with ResultsStore(db) as store:
        run = store.start_run(device="cpu", env={"git_commit": "c", "device": "cpu", "versions": {}})
        store.record([run.row(model="tiny-qwen2vl", method=m, format="W4A8", config_hash=f"h{m}", task="fidelity",
                              metric="kl", value=v) for m, v in (("rtn", 0.3), ("qig", 0.1))])
    return db


def _damage(kind: str, good: Path, path: Path) -> str:
    """Make ``path`` a damaged database of ``kind``; returns what the message must say."""
    if kind == "zero-bytes":
        path.write_bytes(b"")
        return "empty (0-byte) file"
    if kind == "no-tables":
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA user_version = 7")  # a valid SQLite file with nothing in it
        conn.commit()
        conn.close()
        return "has no tables at all"
    if kind == "not-sqlite":
        path.write_text("model,method,value\nqig,W4A8,0.1\n")
        return "not an SQLite file"
    shutil.copyfile(good, path)
    if kind == "truncated":
        conn = sqlite3.connect(path)  # big enough that half the file loses table pages
        conn.execute("CREATE TABLE filler (x)")
        conn.executemany("INSERT INTO filler VALUES (?)", [("x" * 500,) for _ in range(200)])
        conn.commit()
        conn.close()
        with path.open("r+b") as f:
            f.truncate(path.stat().st_size // 2)
        return "is damaged"
    table = kind.removeprefix("no-")
    conn = sqlite3.connect(path)
    conn.execute(f"DROP TABLE {table}")
    conn.commit()
    conn.close()
    return f"has no '{table}' table"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


KINDS = ["no-results", "no-runs", "no-meta", "zero-bytes", "no-tables", "not-sqlite", "truncated"]


@pytest.mark.parametrize("command", ["report", "check"])
@pytest.mark.parametrize("kind", KINDS)
def test_readers_name_what_is_wrong_and_leave_the_file_alone(
    kind: str, command: str, good_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "damaged.db"
    expected = _damage(kind, good_db, db)
    before = _digest(db)
    args = ["--out", str(tmp_path / "out")] if command == "report" else ["--baseline", str(BASELINE)]
    assert main([command, "--db", str(db), *args]) == 2  # was: a report of a re-created schema, or a traceback
    err = capsys.readouterr().err
    assert expected in err and str(db) in err and "Traceback" not in err, err
    assert _digest(db) == before  # was: tables and a schema written into it
    assert not (tmp_path / "out").exists()


def test_a_reader_does_not_change_a_good_database(good_db: Path, tmp_path: Path) -> None:
    db = tmp_path / "copy.db"
    shutil.copyfile(good_db, db)
    before = _digest(db)
    assert main(["report", "--db", str(db), "--out", str(tmp_path / "out")]) == 0
    assert _digest(db) == before and (tmp_path / "out" / "index.html").is_file()
    with ResultsStore(db, readonly=True) as store:
        assert {r.method for r in store.rows()} == {"rtn", "qig"}


# -- report --out that cannot be written ------------------------------------------------------
@pytest.mark.parametrize("target", ["unwritable", "file"])
def test_report_out_that_cannot_be_written_names_the_fix(
    target: str, good_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if target == "unwritable":
        if not Path("/proc").is_dir():
            pytest.skip("needs a read-only /proc (Linux)")
        out = Path("/proc/qigbench-cannot-exist/report")
    else:
        out = tmp_path / "report.html"
        out.write_text("not a folder")
    assert main(["report", "--db", str(good_db), "--out", str(out)]) == 2  # was: FileNotFoundError traceback
    err = capsys.readouterr().err
    assert f"--out {out}" in err and ("pass --out a folder" in err or "pass a folder" in err), err


def test_qigbench_run_checks_its_report_folder_before_running_the_matrix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.html"
    out.write_text("not a folder")
    db = tmp_path / "r.db"
    args = [a for a in RUN if a != "--no-report"]
    assert main([*args, "--out", str(out), "--db", str(db)]) == 2  # was: the whole matrix, then a traceback
    assert f"--out {out}" in capsys.readouterr().err and not db.exists()
