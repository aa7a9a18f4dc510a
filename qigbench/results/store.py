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
"""

from __future__ import annotations

import json
import os
import random
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from qigbench.results.codec import config_values, row_from, row_values, where_clause
from qigbench.results.environment import environment_info
from qigbench.results.errors import ResultsError
from qigbench.results.row import CONFIG_KEY, ROW_KEY, ConfigKey, ResultRow, utc_now
from qigbench.results.schema import DDL, MIGRATIONS, ROW_COLUMNS, SCHEMA_VERSION

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


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(16) == b"SQLite format 3\x00"


class ResultsStore:
    """Results database at ``path`` (created with its schema if missing)."""

    def __init__(self, path: str | Path, *, retry_seconds: float = 120.0) -> None:
        self.path = Path(path)
        self.retry_seconds = retry_seconds
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        if self.path.is_dir():
            raise ResultsError(f"{self.path} is a directory; pass the database file, e.g. {self.path / 'results.db'}")
        if self.path.is_file() and self.path.stat().st_size and not _is_sqlite(self.path):
            raise ResultsError(
                f"{self.path} is not a results database (not an SQLite file); pass the --db written by the suites "
                "or `qigbench run`, or a new path to start one"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._init_schema()

    # -- connection and transactions ------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            try:
                conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            except sqlite3.Error as err:
                raise ResultsError(f"cannot open results database {self.path}: {err}; check the path") from err
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def _retrying(self, attempt: Any) -> Any:
        """Run ``attempt(conn)`` until it stops failing with a lock error or time runs out."""
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.01
        while True:
            conn = self._connection()
            try:
                return attempt(conn)
            except sqlite3.OperationalError as err:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if not _is_busy(err) or time.monotonic() > deadline:
                    raise ResultsError(
                        f"results database {self.path}: {err}; if another process holds it for long, "
                        "wait for it or raise ResultsStore(retry_seconds=...)"
                    ) from err
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 1.0)
            except sqlite3.DatabaseError as err:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise ResultsError(f"results database {self.path} is not usable: {err}") from err

    @contextmanager
    def _immediate(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
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
                            conn.execute(stmt)
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
        sql = f"SELECT {', '.join(ROW_COLUMNS)} FROM results{where} ORDER BY {', '.join(ROW_KEY)}"

        def attempt(conn: sqlite3.Connection) -> list[ResultRow]:
            return [row_from(r) for r in conn.execute(sql, params).fetchall()]

        return list(self._retrying(attempt))

    def count(self) -> int:
        return int(self._retrying(lambda conn: conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]))

    # -- finished configurations ------------------------------------------------------------
    def _mark(self, conn: sqlite3.Connection, key: ConfigKey, run_id: str) -> None:
        conn.execute(
            "INSERT INTO configs_done VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT "
            f"({', '.join(CONFIG_KEY)}) DO UPDATE SET run_id = excluded.run_id, finished_at = excluded.finished_at",
            (*config_values(key), run_id, utc_now()),
        )
        cond = " AND ".join(f"{c} = ?" for c in CONFIG_KEY)
        conn.execute(f"DELETE FROM claims WHERE {cond}", config_values(key))

    # -- claims (a configuration being calibrated by one process) ----------------------------
    def claim_config(
        self,
        key: ConfigKey,
        run_id: str,
        owner: str,
        *,
        ignore_done: bool = False,
        stale_seconds: float = CLAIM_STALE_SECONDS,
    ) -> str | None:
        """Claim ``key`` for ``owner`` before calibrating it; ``None`` when the claim is ours.

        Otherwise returns why not: ``"done"`` (already finished, unless ``ignore_done``) or the
        owner that holds it. Claim and check are one ``BEGIN IMMEDIATE`` transaction, so of two
        processes asking at once exactly one gets it. A claim whose owner is a dead process on
        this host, or older than ``stale_seconds``, is taken over.
        """
        cond = " AND ".join(f"{c} = ?" for c in CONFIG_KEY)
        values = config_values(key)

        def attempt(conn: sqlite3.Connection) -> str | None:
            with self._immediate(conn):
                if not ignore_done and conn.execute(f"SELECT 1 FROM configs_done WHERE {cond}", values).fetchone():
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
        """Remember that ``key`` finished, so an interrupted suite re-run skips it."""

        def attempt(conn: sqlite3.Connection) -> None:
            with self._immediate(conn):
                self._mark(conn, key, run_id)

        self._retrying(attempt)

    def has_config(self, key: ConfigKey) -> bool:
        sql = f"SELECT 1 FROM configs_done WHERE {' AND '.join(f'{c} = ?' for c in CONFIG_KEY)}"
        return bool(self._retrying(lambda conn: conn.execute(sql, config_values(key)).fetchone()))

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
