"""ResultsStore: idempotent writes, filters, resume marks, schema checks."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest

from qigbench.results import ConfigKey, ResultRow, ResultsError, ResultsStore, config_hash
from qigbench.results.schema import SCHEMA_VERSION
from qigbench.stats import ExampleScores

ENV = {"git_commit": "abc123", "device": "cpu", "versions": {"torch": "x"}}


def _row(task: str = "chartqa", value: float = 0.5, **kw: object) -> ResultRow:
    base: dict[str, object] = dict(
        model="tiny", method="qig", format="W3A16", config_hash="h1", task=task, metric="accuracy", value=value
    )
    base.update(kw)
    return ResultRow(**base)  # type: ignore[arg-type]


def test_wal_mode_and_schema_version(tmp_path: Path) -> None:
    ResultsStore(tmp_path / "r.db").close()
    conn = sqlite3.connect(tmp_path / "r.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(ResultsError, match="schema v99"):
        ResultsStore(tmp_path / "r.db")


def test_rerecord_replaces_or_skips_never_duplicates(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "r.db")
    assert store.record([_row(value=0.5), _row(task="vizwiz", value=0.4)]) == 2
    assert store.record(_row(value=0.7)) == 1  # replace
    assert store.count() == 2
    assert store.rows(task="chartqa")[0].value == 0.7
    assert store.record(_row(value=0.9), on_conflict="skip") == 0
    assert store.rows(task="chartqa")[0].value == 0.7
    assert store.record(_row(value=0.9, seed=1), on_conflict="skip") == 1  # a new seed is a new key
    assert store.count() == 3
    # the whole batch again, twice: still 3 rows
    for _ in range(2):
        store.record([_row(value=0.7), _row(task="vizwiz", value=0.4), _row(value=0.9, seed=1)])
    assert store.count() == 3
    with pytest.raises(ResultsError, match="on_conflict"):
        store.record(_row(), on_conflict="merge")  # type: ignore[arg-type]


def test_round_trip_of_every_field_and_filters(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "r.db")
    run = store.start_run(env=ENV, note="unit")
    row = run.row(
        model="tiny",
        method="mbq",
        format="W4A8",
        config_hash="h2",
        task="kl_set",
        metric="kl",
        value=0.125,
        seed=3,
        calib_seconds=1.5,
        peak_memory_bytes=2**30,
        config={"alpha": [1, 2]},
    )
    store.record([row, _row()])
    (back,) = store.rows(method="mbq")
    assert back == row
    assert back.run_id == run.run_id and back.git_commit == "abc123" and back.versions == {"torch": "x"}
    assert [r.method for r in store.rows(method=["mbq", "qig"])] == ["mbq", "qig"]
    assert store.rows(method=[]) == []
    assert store.runs()[0]["note"] == "unit"
    with pytest.raises(ResultsError, match="filter by one of"):
        store.rows(modle="tiny")


def test_interrupted_run_resumes_without_redoing_finished_configs(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    configs = [ConfigKey("tiny", m, "W3A16", "h", 0) for m in ("rtn", "awq", "mbq", "qig")]
    calls: list[str] = []

    def suite(store: ResultsStore, crash_at: str | None) -> None:
        for key in configs:
            if store.has_config(key):
                continue
            if key.method == crash_at:
                raise KeyboardInterrupt
            calls.append(key.method)
            rows = [ResultRow(**dataclasses.asdict(key), task=t, metric="accuracy", value=0.5) for t in ("a", "b")]
            store.record(rows, done=key)

    with pytest.raises(KeyboardInterrupt):
        suite(ResultsStore(db), crash_at="mbq")
    assert calls == ["rtn", "awq"]
    suite(ResultsStore(db), crash_at=None)  # a fresh process re-opens the file
    assert calls == ["rtn", "awq", "mbq", "qig"]
    store = ResultsStore(db)
    assert store.configs_done() == sorted(configs, key=dataclasses.astuple)
    assert store.count() == 8
    assert store.forget_config(configs[0]) == 2
    assert not store.has_config(configs[0]) and store.count() == 6


def test_mark_config_done_alone(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "r.db")
    key = ConfigKey("tiny", "qig", "W4A8", config_hash({"steps": 8}), seed=2)
    assert not store.has_config(key)
    store.mark_config_done(key, run_id="r1")
    store.mark_config_done(key, run_id="r2")  # idempotent
    assert store.has_config(key) and store.configs_done() == [key]


@pytest.mark.parametrize(
    "bad",
    [dict(model=""), dict(value=float("nan")), dict(seed="0"), dict(value="0.5"), dict(metric=None)],
)
def test_bad_rows_are_rejected_with_a_reason(bad: dict[str, object]) -> None:
    with pytest.raises(ResultsError):
        _row(**bad)  # type: ignore[arg-type]


def test_directory_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match=r"results\.db"):
        ResultsStore(tmp_path)


#: The v1 results table exactly as qigbench wrote it before per-example scores existed.
_V1_RESULTS = """CREATE TABLE results (
    id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, model TEXT NOT NULL, method TEXT NOT NULL,
    format TEXT NOT NULL, config_hash TEXT NOT NULL, seed INTEGER NOT NULL, task TEXT NOT NULL,
    metric TEXT NOT NULL, value REAL NOT NULL, calib_seconds REAL, peak_memory_bytes INTEGER,
    device TEXT NOT NULL, git_commit TEXT NOT NULL, versions_json TEXT NOT NULL, config_json TEXT NOT NULL,
    timestamp TEXT NOT NULL, UNIQUE (model, method, format, config_hash, seed, task, metric))"""


def test_v1_database_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    conn.execute(_V1_RESULTS)
    conn.execute(
        "INSERT INTO results (run_id, model, method, format, config_hash, seed, task, metric, value, device, "
        "git_commit, versions_json, config_json, timestamp) VALUES "
        "('r', 'tiny', 'qig', 'W3A16', 'h1', 0, 'chartqa', 'accuracy', 0.25, 'cpu', 'c', '{}', '{}', 't')"
    )
    conn.commit()
    conn.close()
    store = ResultsStore(path)
    (old,) = store.rows()
    assert old.value == 0.25 and old.examples is None
    scores = ExampleScores(("a", "b"), (0.1, 0.3), (2.0, 1.0))
    store.record(_row(task="vizwiz", value=scores.mean(), examples=scores))
    assert store.rows(task="vizwiz")[0].examples == scores
    store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    conn.close()
    assert len(ResultsStore(path).rows()) == 2  # re-opening a migrated file is a no-op


def test_examples_must_be_example_scores() -> None:
    with pytest.raises(ResultsError, match="ExampleScores"):
        _row(examples=[0.1, 0.2])


def test_v2_done_marks_are_migrated_and_still_need_their_rows(tmp_path: Path) -> None:
    """A v2 file's done marks did not list their rows: they count while the configuration has one."""
    path = tmp_path / "v2.db"
    key = ConfigKey("tiny", "qig", "W3A16", "h1")
    with ResultsStore(path) as store:
        store.record(_row(config_hash="h1"))
    conn = sqlite3.connect(path)  # what v2 left: no rows_json column
    conn.execute("ALTER TABLE configs_done DROP COLUMN rows_json")
    conn.execute("INSERT INTO configs_done VALUES ('tiny', 'qig', 'W3A16', 'h1', 0, 'r', 't')")
    conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with ResultsStore(path) as store:
        assert store.has_config(key) and store.missing_rows(key) == []
        store.forget_config(key)
        store.mark_config_done(key)  # a mark with no rows at all: nothing to miss
        assert store.missing_rows(key) == []
    conn = sqlite3.connect(path)
    conn.execute("UPDATE configs_done SET rows_json = ''")  # the v2 mark again, its rows gone
    conn.commit()
    conn.close()
    with ResultsStore(path) as store:
        assert not store.has_config(key)
