"""SQLite store in WAL mode: the embedded default.

Each ``append`` is one transaction; once it returns, the rows survive the process being
killed (WAL with ``synchronous=NORMAL`` is durable against process crashes; set
``synchronous="FULL"`` to survive power loss as well).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Sequence
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
    """Append-only SQLite store. Safe to share between threads of one process."""

    def __init__(self, path: str | Path, synchronous: str = "NORMAL") -> None:
        self.path = str(path)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite store at {self.path}: {exc}") from exc
        self._lock = threading.Lock()

    def _write(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(sql, rows)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
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
