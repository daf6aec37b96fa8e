"""SQLite store in WAL mode: the embedded default.

Each ``append`` is one transaction, unless it runs inside ``transaction()``, whose writes
commit together. Once a commit returns, the rows survive the process being killed (WAL
with ``synchronous=NORMAL``, the default); with ``synchronous="FULL"`` (what the service
uses) they survive a power loss or an OS crash as well, at one fsync per commit.

    store = SQLiteStore("twins.db")
    with store.transaction():                # all or nothing
        store.append("pump", observations, schema_version=3)
        store.execute("INSERT INTO my_table VALUES (?)", [1])
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lmtwin.errors import StoreError
from lmtwin.schema import SchemaChange
from lmtwin.store.base import Note, Record
from lmtwin.types import Observation

_SCHEMA = """
CREATE TABLE IF NOT EXISTS observations (
    id INTEGER PRIMARY KEY,
    twin TEXT NOT NULL,
    episode TEXT NOT NULL,
    t REAL NOT NULL,
    variable TEXT NOT NULL,
    value REAL NOT NULL,
    schema_version INTEGER NOT NULL,
    recorded_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS obs_twin_ep_t ON observations (twin, episode, t);
CREATE INDEX IF NOT EXISTS obs_twin_var ON observations (twin, variable, t);
CREATE TABLE IF NOT EXISTS schema_changes (
    id INTEGER PRIMARY KEY,
    twin TEXT NOT NULL,
    change TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS notes (
    id INTEGER PRIMARY KEY,
    twin TEXT NOT NULL,
    at REAL NOT NULL,
    text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    twin TEXT NOT NULL,
    kind TEXT NOT NULL,
    at REAL NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_twin_kind ON records (twin, kind, id);
"""


class SQLiteStore:
    """Append-only SQLite store. Safe to share between threads of one process: one
    connection behind a re-entrant lock, which a ``transaction()`` holds until it ends
    (other threads wait; the same thread's writes join it)."""

    def __init__(self, path: str | Path, synchronous: str = "NORMAL") -> None:
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise StoreError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
        self.path = str(path)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._db.execute("PRAGMA busy_timeout=5000")  # another process's write lock
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite store at {self.path}: {exc}") from exc
        self._lock = threading.RLock()
        self._depth = 0  # open transaction() blocks of the thread holding the lock

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything this thread writes in the block commits at its end, or nothing does
        (on an exception, or if the commit fails: StoreError). Blocks nest."""
        with self._lock:
            if self._depth:  # nested: part of the outer transaction
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._sql("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
            except BaseException:
                self._depth = 0
                self._rollback()
                raise
            self._depth = 0
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StoreError(f"commit to {self.path} failed: {exc}") from exc

    def execute(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One statement with ``?`` placeholders, for a caller's own tables; its rows.
        Joins an open ``transaction()``, else commits at once."""
        with self._lock:
            cur = self._sql(sql, args)
            return list(cur.fetchall()) if cur.description else []

    def _rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def _sql(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, tuple(args))
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    def _write(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        with self._lock:
            try:
                if self._depth:  # part of the caller's transaction
                    self._db.executemany(sql, rows)
                    return
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(sql, rows)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if not self._depth:
                    self._rollback()
                raise StoreError(f"write to {self.path} failed: {exc}") from exc

    def _read(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"read from {self.path} failed: {exc}") from exc

    def append(self, twin: str, observations: Sequence[Observation], schema_version: int) -> None:
        now = time.time()
        rows = [
            (twin, o.episode, float(o.t), k, float(v), schema_version, now)
            for o in observations
            for k, v in o.values.items()
        ]
        self._write(
            "INSERT INTO observations (twin, episode, t, variable, value, schema_version,"
            " recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    def observations(
        self,
        twin: str,
        episode: str | None = None,
        variable: str | None = None,
        t_from: float | None = None,
        t_to: float | None = None,
        as_of: float | None = None,
    ) -> list[Observation]:
        sql = "SELECT episode, t, variable, value FROM observations WHERE twin = ?"
        args: list[Any] = [twin]
        for clause, value in (
            ("episode = ?", episode),
            ("variable = ?", variable),
            ("t >= ?", t_from),
            ("t <= ?", t_to),
            ("recorded_at <= ?", as_of),
        ):
            if value is not None:
                sql += f" AND {clause}"
                args.append(value)
        sql += " ORDER BY episode, t, id"
        grouped: dict[tuple[str, float], dict[str, float]] = {}
        for ep, t, var, value in self._read(sql, args):
            grouped.setdefault((ep, t), {})[var] = value
        return [Observation(ep, t, vals) for (ep, t), vals in grouped.items()]

    def append_schema_change(self, twin: str, change: SchemaChange) -> None:
        self._write(
            "INSERT INTO schema_changes (twin, change) VALUES (?, ?)",
            [(twin, json.dumps(change.to_dict()))],
        )

    def schema_changes(self, twin: str) -> list[SchemaChange]:
        rows = self._read("SELECT change FROM schema_changes WHERE twin = ? ORDER BY id", [twin])
        return [SchemaChange.from_dict(json.loads(r[0])) for r in rows]

    def append_note(self, twin: str, note: Note) -> None:
        self._write(
            "INSERT INTO notes (twin, at, text) VALUES (?, ?, ?)", [(twin, note.at, note.text)]
        )

    def notes(self, twin: str, as_of: float | None = None) -> list[Note]:
        sql = "SELECT at, text FROM notes WHERE twin = ?"
        args: list[Any] = [twin]
        if as_of is not None:
            sql += " AND at <= ?"
            args.append(as_of)
        return [Note(at, text) for at, text in self._read(sql + " ORDER BY id", args)]

    def append_record(self, twin: str, kind: str, payload: dict[str, Any]) -> Record:
        at, text = time.time(), json.dumps(payload, allow_nan=False)
        with self._lock:
            try:
                cur = self._db.execute(
                    "INSERT INTO records (twin, kind, at, payload) VALUES (?, ?, ?, ?)",
                    (twin, kind, at, text),
                )
            except sqlite3.Error as exc:
                raise StoreError(f"write to {self.path} failed: {exc}") from exc
        return Record(int(cur.lastrowid or 0), kind, at, json.loads(text))

    def records(
        self, twin: str, kind: str | None = None, after: int = 0, limit: int | None = None
    ) -> list[Record]:
        sql = "SELECT id, kind, at, payload FROM records WHERE twin = ? AND id > ?"
        args: list[Any] = [twin, after]
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        return [Record(i, k, at, json.loads(p)) for i, k, at, p in self._read(sql, args)]

    def twins(self) -> list[str]:
        rows = self._read(
            "SELECT twin FROM observations UNION SELECT twin FROM schema_changes"
            " UNION SELECT twin FROM notes",
            [],
        )
        return sorted(r[0] for r in rows)

    def close(self) -> None:
        with self._lock:
            self._db.close()
