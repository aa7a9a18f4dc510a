"""``ResultsStore``: the SQLite file every suite, report and check reads and writes.

Why SQLite: one file, no server, and safe for several writer *processes* (pytest-xdist
workers) when used the right way, which this class does:

* WAL journal, so readers never block the writer and the writer never blocks readers;
* every write is one ``BEGIN IMMEDIATE`` transaction, which takes the write lock up front
  (a deferred transaction that later upgrades can fail with ``SQLITE_BUSY`` and lose its
  work), plus a busy timeout and our own retry with jittered backoff on ``database is locked``;
* a unique key ``(model, method, format, config_hash, seed, task, metric)`` with UPSERT, so
  re-running a configuration replaces (or skips) its rows instead of duplicating them;
* one connection per process (re-opened after ``fork``), since sqlite connections must not
  cross processes.

Readers (``qigbench report``, ``qigbench check``) open it with ``readonly=True``: an SQLite
``mode=ro`` connection that never creates or migrates a schema, and that names what is wrong with a
file it cannot read (missing, empty, not SQLite, damaged, a table missing) instead of repairing it.
"""

from __future__ import annotations

import json
import os
import random
import socket
import sqlite3
import time
import uuid
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from qigbench.results.codec import config_values, row_from, row_values, where_clause
from qigbench.results.environment import environment_info
from qigbench.results.errors import ResultsError
from qigbench.results.row import CONFIG_KEY, ROW_KEY, ConfigKey, ResultRow, utc_now
from qigbench.results.schema import ADDED_COLUMNS, DDL, MIGRATIONS, READ_TABLES, ROW_COLUMNS, SCHEMA_VERSION

OnConflict = Literal["replace", "skip"]
_BUSY_TIMEOUT_MS = 5_000
#: A claim this old is taken over even when its owner cannot be checked (another host).
CLAIM_STALE_SECONDS = 48 * 3600.0


def claim_owner() -> str:
    """``host:pid:token``: who holds a claim (the token tells two sessions of one process apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _stale(owner: str, claimed_at: float, stale_seconds: float) -> bool:
    if time.time() - float(claimed_at) > stale_seconds:
        return True
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True  # its process is gone: the claim was left by a crash
    except PermissionError:
        return False
    return False


@dataclass(frozen=True)
class Run:
    """One invocation of a suite; :meth:`row` stamps rows with its id and environment."""

    run_id: str
    git_commit: str
    device: str
    versions: Mapping[str, str] = field(default_factory=dict)

    def row(self, **fields: Any) -> ResultRow:
        stamp = {"run_id": self.run_id, "git_commit": self.git_commit, "device": self.device, "versions": self.versions}
        return ResultRow(**{**stamp, **fields})


def _is_busy(err: sqlite3.OperationalError) -> bool:
    text = str(err).lower()
    return "locked" in text or "busy" in text


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass  # the error being raised says more than a failed rollback of a damaged file


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(16) == b"SQLite format 3\x00"


class ResultsStore:
    """Results database at ``path``: a writer creates it with its schema if missing (and migrates an
    older file); ``readonly=True`` opens an existing one to read, never writing it."""

    def __init__(self, path: str | Path, *, retry_seconds: float = 120.0, readonly: bool = False) -> None:
        self.path = Path(path)
        self.retry_seconds = retry_seconds
        self.readonly = readonly
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._columns: frozenset[str] = frozenset(ROW_COLUMNS)
        if self.path.is_dir():
            raise ResultsError(f"{self.path} is a directory; pass the database file, e.g. {self.path / 'results.db'}")
        if readonly:
            self._check_readable()
            return
        if self.path.is_file() and self.path.stat().st_size and not _is_sqlite(self.path):
            raise ResultsError(
                f"{self.path} is not a results database (not an SQLite file); pass the --db written by the suites "
                "or `qigbench run`, or a new path to start one"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._init_schema()

    def _check_readable(self) -> None:
        """What a reader needs, named when it is not there (the reader changes nothing)."""
        fill = f"run the suites with --db {self.path} first"
        if not self.path.is_file():
            raise ResultsError(f"results database {self.path} does not exist; {fill}")
        if self.path.stat().st_size == 0:
            raise ResultsError(
                f"results database {self.path} is an empty (0-byte) file, not a database: nothing was ever written "
                f"into it; {fill}, or pass the --db they wrote"
            )
        if not _is_sqlite(self.path):
            raise ResultsError(
                f"{self.path} is not a results database (not an SQLite file); pass the --db written by the suites "
                "or `qigbench run`"
            )

        def attempt(conn: sqlite3.Connection) -> None:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            problems = [str(r[0]) for r in conn.execute("PRAGMA quick_check").fetchall()]
            if problems != ["ok"]:
                raise sqlite3.DatabaseError("; ".join(problems[:3]))
            missing = [t for t in READ_TABLES if t not in tables]
            if missing:
                what = "has no tables at all" if not tables else f"has no {', '.join(repr(t) for t in missing)} table"
                raise ResultsError(
                    f"results database {self.path} {what} (found: {', '.join(sorted(tables)) or 'none'}): it is "
                    "damaged or was not written by qigbench, and a reader does not recreate tables; restore it from a "
                    "copy, or rerun the suites with a new --db"
                )
            found = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if found is None or not str(found[0]).isdigit():
                raise ResultsError(
                    f"results database {self.path} has no schema version in its 'meta' table: it is damaged or was not "
                    "written by qigbench; restore it from a copy, or rerun the suites with a new --db"
                )
            if int(found[0]) > SCHEMA_VERSION:
                raise ResultsError(
                    f"{self.path} has results schema v{found[0]}, this qigbench reads up to v{SCHEMA_VERSION}; use "
                    "the qigbench version that wrote it"
                )
            self._columns = frozenset(r[1] for r in conn.execute("PRAGMA table_info(results)"))
            absent = [c for c in ROW_COLUMNS if c not in self._columns and c not in ADDED_COLUMNS]
            if absent:
                raise ResultsError(
                    f"results database {self.path}: its 'results' table has no column {', '.join(absent)}; it was not "
                    "written by qigbench or is damaged; rerun the suites with a new --db"
                )

        self._retrying(attempt)

    # -- connection and transactions ------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            try:
                if self.readonly:  # mode=ro: SQLite itself refuses every write, schema included
                    uri = f"file:{quote(str(self.path.resolve()))}?mode=ro"
                    conn = sqlite3.connect(uri, uri=True, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
                else:
                    conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
                conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
                if not self.readonly:
                    conn.execute("PRAGMA synchronous = NORMAL")
            except sqlite3.DatabaseError as err:
                raise self._unusable(err) from None
            except sqlite3.Error as err:
                raise ResultsError(f"cannot open results database {self.path}: {err}; check the path") from err
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def _unusable(self, err: sqlite3.Error) -> ResultsError:
        return ResultsError(
            f"results database {self.path} is damaged (SQLite: {err}); restore it from a copy, or rerun the suites "
            f"with a new --db (`sqlite3 {self.path} .recover` may save the rows that are left)"
        )

    def _retrying(self, attempt: Any) -> Any:
        """Run ``attempt(conn)`` until it stops failing with a lock error or time runs out."""
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.01
        while True:
            conn = self._connection()
            try:
                return attempt(conn)
            except sqlite3.OperationalError as err:
                _rollback(conn)
                if not _is_busy(err) or time.monotonic() > deadline:
                    if "malformed" in str(err) or "not a database" in str(err):
                        raise self._unusable(err) from None
                    raise ResultsError(
                        f"results database {self.path}: {err}; if another process holds it for long, "
                        "wait for it or raise ResultsStore(retry_seconds=...)"
                    ) from err
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 1.0)
            except sqlite3.DatabaseError as err:
                _rollback(conn)
                raise self._unusable(err) from None

    @contextmanager
    def _immediate(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        if self.readonly:
            raise ResultsError(f"{self.path} was opened read-only (readonly=True); open ResultsStore(path) to write")
        conn.execute("BEGIN IMMEDIATE")
        yield conn
        conn.execute("COMMIT")

    def _init_schema(self) -> None:
        def attempt(conn: sqlite3.Connection) -> None:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise ResultsError(f"{self.path}: could not switch to WAL journal (got {mode}); use a local disk")
            with self._immediate(conn):
                for stmt in DDL:
                    conn.execute(stmt)
                found = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                if found is None:
                    conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                elif int(found[0]) > SCHEMA_VERSION:
                    raise ResultsError(
                        f"{self.path} has results schema v{found[0]}, this qigbench writes v{SCHEMA_VERSION}; "
                        "use a new --db file or the qigbench version that wrote it"
                    )
                elif int(found[0]) < SCHEMA_VERSION:  # an older file: migrate in place, keeping every row
                    for version in range(int(found[0]), SCHEMA_VERSION):
                        for stmt in MIGRATIONS[version]:
                            try:
                                conn.execute(stmt)
                            except sqlite3.OperationalError as err:  # a table the DDL above just created whole
                                if "duplicate column name" not in str(err):
                                    raise
                    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))

        self._retrying(attempt)

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs ---------------------------------------------------------------------------------
    def start_run(self, device: str | None = None, note: str = "", env: Mapping[str, Any] | None = None) -> Run:
        """Register a run (environment taken from :func:`environment_info` unless ``env`` is given)."""
        env = dict(env) if env is not None else environment_info(device)
        run = Run(uuid.uuid4().hex[:12], str(env["git_commit"]), str(env["device"]), dict(env["versions"]))
        values = (run.run_id, utc_now(), run.git_commit, json.dumps(run.versions, sort_keys=True), run.device, note)

        def attempt(conn: sqlite3.Connection) -> None:
            with self._immediate(conn):
                conn.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?)", values)

        self._retrying(attempt)
        return run

    def runs(self) -> list[dict[str, Any]]:
        def attempt(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            cur = conn.execute("SELECT run_id, started_at, git_commit, versions_json, device, note FROM runs")
            return [
                {
                    "run_id": r[0],
                    "started_at": r[1],
                    "git_commit": r[2],
                    "versions": json.loads(r[3]),
                    "device": r[4],
                    "note": r[5],
                }
                for r in cur.fetchall()
            ]

        return list(self._retrying(attempt))

    # -- rows ---------------------------------------------------------------------------------
    def record(
        self,
        rows: ResultRow | Iterable[ResultRow],
        on_conflict: OnConflict = "replace",
        done: ConfigKey | Iterable[ConfigKey] | None = None,
    ) -> int:
        """Write rows in one transaction; returns how many rows were inserted or replaced.

        ``on_conflict="replace"`` overwrites a row with the same key (a re-run's newer number
        wins), ``"skip"`` keeps the existing one. ``done`` marks configurations as finished in
        the same transaction, so a crash never leaves a configuration "done" without its rows.
        """
        batch = [rows] if isinstance(rows, ResultRow) else list(rows)
        for row in batch:
            if not isinstance(row, ResultRow):
                raise ResultsError(f"record() takes ResultRow objects, got {type(row).__name__}")
        if on_conflict not in ("replace", "skip"):
            raise ResultsError(f"on_conflict must be 'replace' or 'skip', got {on_conflict!r}")
        keys = [] if done is None else [done] if isinstance(done, ConfigKey) else list(done)
        placeholders = ", ".join("?" for _ in ROW_COLUMNS)
        conflict = ", ".join(ROW_KEY)
        if on_conflict == "replace":
            updates = ", ".join(f"{c} = excluded.{c}" for c in ROW_COLUMNS if c not in ROW_KEY)
            action = f"DO UPDATE SET {updates}"
        else:
            action = "DO NOTHING"
        sql = (
            f"INSERT INTO results ({', '.join(ROW_COLUMNS)}) VALUES ({placeholders}) ON CONFLICT ({conflict}) {action}"
        )
        values = [row_values(r) for r in batch]

        def attempt(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            with self._immediate(conn):
                conn.executemany(sql, values)
                written = conn.total_changes - before
                for key in keys:
                    self._mark(conn, key, batch[0].run_id if batch else "")
            return written

        return int(self._retrying(attempt))

    def rows(self, **filters: Any) -> list[ResultRow]:
        """Rows matching every filter; a filter value may be a scalar or a list (any of)."""
        where, params = where_clause(filters)
        columns = [c if c in self._columns else f"{ADDED_COLUMNS[c]} AS {c}" for c in ROW_COLUMNS]
        sql = f"SELECT {', '.join(columns)} FROM results{where} ORDER BY {', '.join(ROW_KEY)}"

        def attempt(conn: sqlite3.Connection) -> list[ResultRow]:
            return [row_from(r) for r in conn.execute(sql, params).fetchall()]

        return list(self._retrying(attempt))

    def count(self) -> int:
        return int(self._retrying(lambda conn: conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]))

    # -- finished configurations ------------------------------------------------------------
    # A done mark records the (task, metric) rows the configuration had when it was marked; it
    # counts only while every one of them is still there (a rerun trusts the rows, not the mark).
    def _mark(self, conn: sqlite3.Connection, key: ConfigKey, run_id: str) -> None:
        cond = " AND ".join(f"{c} = ?" for c in CONFIG_KEY)
        pairs = conn.execute(f"SELECT DISTINCT task, metric FROM results WHERE {cond}", config_values(key)).fetchall()
        conn.execute(
            f"INSERT INTO configs_done ({', '.join(CONFIG_KEY)}, run_id, finished_at, rows_json) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT "
            f"({', '.join(CONFIG_KEY)}) DO UPDATE SET run_id = excluded.run_id, finished_at = excluded.finished_at, "
            "rows_json = excluded.rows_json",
            (*config_values(key), run_id, utc_now(), json.dumps(sorted([t, m] for t, m in pairs))),
        )
        conn.execute(f"DELETE FROM claims WHERE {cond}", config_values(key))

    def _missing(self, conn: sqlite3.Connection, key: ConfigKey, tasks: Collection[str]) -> list[str] | None:
        """``None`` without a done mark; else the ``task/metric`` rows it lists (and the ``tasks``)
        that are not in ``results`` (``[]``: complete)."""
        cond = " AND ".join(f"{c} = ?" for c in CONFIG_KEY)
        values = config_values(key)
        mark = conn.execute(f"SELECT rows_json FROM configs_done WHERE {cond}", values).fetchone()
        if mark is None:
            return None
        have = {(t, m) for t, m in conn.execute(f"SELECT task, metric FROM results WHERE {cond}", values).fetchall()}
        if not mark[0]:  # a mark from before v3 does not list its rows: at least one must be there
            missing = [] if have else ["every row (its done mark, from before schema v3, lists none)"]
        else:
            missing = [f"{t}/{m}" for t, m in sorted({(t, m) for t, m in json.loads(mark[0])} - have)]
        missing += [t for t in sorted(set(tasks)) if not any(task == t for task, _ in have)]
        return missing

    def missing_rows(self, key: ConfigKey, tasks: Collection[str] = ()) -> list[str] | None:
        """What keeps ``key`` from being complete: ``None`` when it was never marked done, else the
        ``task/metric`` rows its done mark lists that are gone, plus the ``tasks`` with no row at all
        (``[]``: every expected row is there)."""
        return self._retrying(lambda conn: self._missing(conn, key, tasks))  # type: ignore[no-any-return]

    def has_task(self, key: ConfigKey, task: str) -> bool:
        """Whether ``task`` of ``key`` is measured: it has rows, and every metric of it that the
        configuration's done mark lists is among them."""
        cond = " AND ".join(f"{c} = ?" for c in CONFIG_KEY)

        def attempt(conn: sqlite3.Connection) -> bool:
            sql = f"SELECT DISTINCT metric FROM results WHERE {cond} AND task = ?"
            have = {r[0] for r in conn.execute(sql, (*config_values(key), task)).fetchall()}
            if not have:
                return False
            mark = conn.execute(f"SELECT rows_json FROM configs_done WHERE {cond}", config_values(key)).fetchone()
            pairs = json.loads(mark[0]) if mark is not None and mark[0] else []
            return {m for t, m in pairs if t == task} <= have

        return bool(self._retrying(attempt))

    # -- claims (a configuration being calibrated by one process) ----------------------------
    def claim_config(
        self,
        key: ConfigKey,
        run_id: str,
        owner: str,
        *,
        tasks: Collection[str] = (),
        ignore_done: bool = False,
        stale_seconds: float = CLAIM_STALE_SECONDS,
    ) -> str | None:
        """Claim ``key`` for ``owner`` before calibrating it; ``None`` when the claim is ours.

        Otherwise returns why not: ``"done"`` (finished, with every row its done mark lists and a row
        of each of ``tasks`` in the store; unless ``ignore_done``) or the owner that holds it. Claim
        and check are one ``BEGIN IMMEDIATE`` transaction, so of two processes asking at once exactly
        one gets it. A claim whose owner is a dead process on this host, or older than
        ``stale_seconds``, is taken over.
        """
        cond = " AND ".join(f"{c} = ?" for c in CONFIG_KEY)
        values = config_values(key)

        def attempt(conn: sqlite3.Connection) -> str | None:
            with self._immediate(conn):
                if not ignore_done and self._missing(conn, key, tasks) == []:
                    return "done"
                held = conn.execute(f"SELECT owner, claimed_at FROM claims WHERE {cond}", values).fetchone()
                if held is not None and held[0] != owner and not _stale(held[0], held[1], stale_seconds):
                    return str(held[0])
                conn.execute(
                    f"INSERT INTO claims VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT ({', '.join(CONFIG_KEY)}) "
                    "DO UPDATE SET run_id = excluded.run_id, owner = excluded.owner, claimed_at = excluded.claimed_at",
                    (*values, run_id, owner, time.time()),
                )
                return None

        return self._retrying(attempt)  # type: ignore[no-any-return]

    def release_claims(self, owner: str) -> int:
        """Drop every claim ``owner`` still holds (a process closing, or giving a configuration up)."""

        def attempt(conn: sqlite3.Connection) -> int:
            with self._immediate(conn):
                return int(conn.execute("DELETE FROM claims WHERE owner = ?", (owner,)).rowcount)

        return int(self._retrying(attempt))

    def claims(self) -> dict[ConfigKey, str]:
        """Configurations claimed right now, with their owners."""
        sql = f"SELECT {', '.join(CONFIG_KEY)}, owner FROM claims"
        return {ConfigKey(*r[:-1]): str(r[-1]) for r in self._retrying(lambda conn: conn.execute(sql).fetchall())}

    def mark_config_done(self, key: ConfigKey, run_id: str = "") -> None:
        """Remember that ``key`` finished with the rows it has now, so a re-run skips it while they are all there."""

        def attempt(conn: sqlite3.Connection) -> None:
            with self._immediate(conn):
                self._mark(conn, key, run_id)

        self._retrying(attempt)

    def has_config(self, key: ConfigKey, tasks: Collection[str] = ()) -> bool:
        """Whether ``key`` is finished: marked done, every row its mark lists still there, and a row
        of each of ``tasks`` (see :meth:`missing_rows`)."""
        return self.missing_rows(key, tasks) == []

    def configs_done(self) -> list[ConfigKey]:
        sql = f"SELECT {', '.join(CONFIG_KEY)} FROM configs_done ORDER BY {', '.join(CONFIG_KEY)}"
        return [ConfigKey(*r) for r in self._retrying(lambda conn: conn.execute(sql).fetchall())]

    def forget_config(self, key: ConfigKey) -> int:
        """Drop a configuration's rows and its done mark (to force a re-run); returns rows deleted."""
        cond = " AND ".join(f"{c} = ?" for c in CONFIG_KEY)

        def attempt(conn: sqlite3.Connection) -> int:
            with self._immediate(conn):
                n = conn.execute(f"DELETE FROM results WHERE {cond}", config_values(key)).rowcount
                conn.execute(f"DELETE FROM configs_done WHERE {cond}", config_values(key))
            return int(n)

        return int(self._retrying(attempt))


__all__ = ["CLAIM_STALE_SECONDS", "OnConflict", "ResultsStore", "Run", "claim_owner"]
