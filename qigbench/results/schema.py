"""SQL of the results database (documented for humans in ``SCHEMA.md``; keep both in step)."""

from __future__ import annotations

SCHEMA_VERSION = 3

#: Statements that bring a database of version ``v`` to ``v + 1`` (run in one transaction).
MIGRATIONS: dict[int, tuple[str, ...]] = {
    # v2: per-example scores behind each value ('' = none recorded)
    1: ("ALTER TABLE results ADD COLUMN examples_json TEXT NOT NULL DEFAULT ''",),
    # v3: the (task, metric) rows a configuration had when it was marked done ('' = not recorded)
    2: ("ALTER TABLE configs_done ADD COLUMN rows_json TEXT NOT NULL DEFAULT ''",),
}

#: Tables a reader needs (``qigbench report`` / ``check``); a reader never creates them.
READ_TABLES: tuple[str, ...] = ("meta", "runs", "results")
#: Columns of ``results`` added by a migration, and the value a reader of an older file sees.
ADDED_COLUMNS: dict[str, str] = {"examples_json": "''"}

DDL: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id        TEXT PRIMARY KEY,
        started_at    TEXT NOT NULL,
        git_commit    TEXT NOT NULL,
        versions_json TEXT NOT NULL,
        device        TEXT NOT NULL,
        note          TEXT NOT NULL DEFAULT ''
    )""",
    """CREATE TABLE IF NOT EXISTS results (
        id                INTEGER PRIMARY KEY,
        run_id            TEXT NOT NULL,
        model             TEXT NOT NULL,
        method            TEXT NOT NULL,
        format            TEXT NOT NULL,
        config_hash       TEXT NOT NULL,
        seed              INTEGER NOT NULL,
        task              TEXT NOT NULL,
        metric            TEXT NOT NULL,
        value             REAL NOT NULL,
        calib_seconds     REAL,
        peak_memory_bytes INTEGER,
        device            TEXT NOT NULL,
        git_commit        TEXT NOT NULL,
        versions_json     TEXT NOT NULL,
        config_json       TEXT NOT NULL,
        timestamp         TEXT NOT NULL,
        examples_json     TEXT NOT NULL DEFAULT '',
        UNIQUE (model, method, format, config_hash, seed, task, metric)
    )""",
    "CREATE INDEX IF NOT EXISTS results_by_config ON results (model, method, format, config_hash, seed)",
    """CREATE TABLE IF NOT EXISTS configs_done (
        model       TEXT NOT NULL,
        method      TEXT NOT NULL,
        format      TEXT NOT NULL,
        config_hash TEXT NOT NULL,
        seed        INTEGER NOT NULL,
        run_id      TEXT NOT NULL,
        finished_at TEXT NOT NULL,
        rows_json   TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (model, method, format, config_hash, seed)
    )""",
    # added after v1 without a version bump: CREATE ... IF NOT EXISTS adds it to older v1 files
    """CREATE TABLE IF NOT EXISTS claims (
        model       TEXT NOT NULL,
        method      TEXT NOT NULL,
        format      TEXT NOT NULL,
        config_hash TEXT NOT NULL,
        seed        INTEGER NOT NULL,
        run_id      TEXT NOT NULL,
        owner       TEXT NOT NULL,
        claimed_at  REAL NOT NULL,
        PRIMARY KEY (model, method, format, config_hash, seed)
    )""",
)

#: Columns written for a row, in order (``id`` is assigned by SQLite).
ROW_COLUMNS: tuple[str, ...] = (
    "run_id",
    "model",
    "method",
    "format",
    "config_hash",
    "seed",
    "task",
    "metric",
    "value",
    "calib_seconds",
    "peak_memory_bytes",
    "device",
    "git_commit",
    "versions_json",
    "config_json",
    "timestamp",
    "examples_json",
)
