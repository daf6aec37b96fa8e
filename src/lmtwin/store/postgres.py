"""PostgreSQL store (psycopg 3): the server choice when several processes share twins.

Same long format as the SQLite store; each write is one transaction, committed before
it returns, unless it runs inside ``transaction()``: then everything written in the
block commits together at its end, or nothing does.

    store = PostgresStore("postgresql://user@127.0.0.1:5432/twins")
    with store.transaction():                 # all or nothing
        store.append("pump", observations, schema_version=3)
        store.execute("INSERT INTO my_table (a) VALUES (?)", [1])   # '?' placeholders

A connection the server dropped (a restart) is opened again by the next call outside a
transaction; the call that saw it drop raised ``StoreError``, as every failure does.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from lmtwin.errors import DependencyNotInstalled, StoreError
from lmtwin.schema import SchemaChange
from lmtwin.store.base import Note, Record
from lmtwin.types import Observation

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS observations (
        id BIGSERIAL PRIMARY KEY,
        twin TEXT NOT NULL,
        episode TEXT NOT NULL,
        t DOUBLE PRECISION NOT NULL,
        variable TEXT NOT NULL,
        value DOUBLE PRECISION NOT NULL,
        schema_version INTEGER NOT NULL,
        recorded_at DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS obs_twin_ep_t ON observations (twin, episode, t)",
    "CREATE INDEX IF NOT EXISTS obs_twin_var ON observations (twin, variable, t)",
    """CREATE TABLE IF NOT EXISTS schema_changes (
        id BIGSERIAL PRIMARY KEY, twin TEXT NOT NULL, change TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS notes (
        id BIGSERIAL PRIMARY KEY, twin TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,
        text TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS records (
        id BIGSERIAL PRIMARY KEY, twin TEXT NOT NULL, kind TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL, payload TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS records_twin_kind ON records (twin, kind, id)",
]


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise DependencyNotInstalled("psycopg", "service") from exc
    return psycopg


def connect(url: str) -> Any:
    """An autocommit psycopg connection; any failure is a StoreError naming the reason."""
    psycopg = _psycopg()
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to PostgreSQL: {exc}") from exc


class PostgresStore:
    """Append-only store on PostgreSQL. Thread-safe: one connection behind a lock, which
    a ``transaction()`` holds until it ends (other threads wait; the same thread's calls
    join it).

    Example:
        >>> store = PostgresStore("postgresql://user@127.0.0.1:5432/twins")  # doctest: +SKIP
    """

    def __init__(self, url: str) -> None:
        self._psycopg = _psycopg()
        self.url = url
        self._lock = threading.RLock()
        self._depth = 0  # open transaction() blocks of the thread holding the lock
        self._db = connect(url)
        try:
            with self._db.transaction():
                # one creator at a time when several processes start together
                self._db.execute("SELECT pg_advisory_xact_lock(7432001)")
                for sql in _SCHEMA:
                    self._db.execute(sql)
        except self._psycopg.Error as exc:
            raise StoreError(f"cannot open PostgreSQL store: {exc}") from exc

    def _conn(self) -> Any:
        """The connection, opened again if the server dropped it (never inside a
        transaction, whose work is lost with the connection)."""
        if self._depth == 0 and (self._db.closed or self._db.broken):
            self._db = connect(self.url)
        return self._db

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything this thread writes in the block commits at its end, or nothing does
        (on an exception, or if the commit fails: StoreError). Blocks nest."""
        with self._lock:
            try:
                with self._conn().transaction():
                    self._depth += 1
                    try:
                        yield
                    finally:
                        self._depth -= 1
            except self._psycopg.Error as exc:
                raise StoreError(f"PostgreSQL transaction failed: {exc}") from exc

    def execute(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (``?`` placeholders) and return its rows; joins an open
        ``transaction()``, else commits at once."""
        with self._lock:
            try:
                cur = self._conn().execute(sql.replace("?", "%s"), tuple(args))
                return list(cur.fetchall()) if cur.description else []
            except self._psycopg.Error as exc:
                raise StoreError(f"PostgreSQL statement failed: {exc}") from exc

    def _write(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        with self._lock:
            try:
                db = self._conn()
                with db.transaction(), db.cursor() as cur:  # a savepoint inside one
                    cur.executemany(sql, rows)
            except self._psycopg.Error as exc:
                raise StoreError(f"write to PostgreSQL failed: {exc}") from exc

    def _read(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn().execute(sql, args).fetchall()
            except self._psycopg.Error as exc:
                raise StoreError(f"read from PostgreSQL failed: {exc}") from exc

    def append(self, twin: str, observations: Sequence[Observation], schema_version: int) -> None:
        now = time.time()
        rows = [(twin, o.episode, float(o.t), k, float(v), schema_version, now)
                for o in observations for k, v in o.values.items()]
        self._write("INSERT INTO observations (twin, episode, t, variable, value,"
                    " schema_version, recorded_at) VALUES (%s, %s, %s, %s, %s, %s, %s)", rows)

    def observations(self, twin: str, episode: str | None = None, variable: str | None = None,
                     t_from: float | None = None, t_to: float | None = None,
                     as_of: float | None = None) -> list[Observation]:
        sql = "SELECT episode, t, variable, value FROM observations WHERE twin = %s"
        args: list[Any] = [twin]
        for clause, value in (("episode = %s", episode), ("variable = %s", variable),
                              ("t >= %s", t_from), ("t <= %s", t_to),
                              ("recorded_at <= %s", as_of)):
            if value is not None:
                sql += f" AND {clause}"
                args.append(value)
        grouped: dict[tuple[str, float], dict[str, float]] = {}
        for ep, t, var, value in self._read(sql + " ORDER BY episode, t, id", args):
            grouped.setdefault((ep, t), {})[var] = value
        return [Observation(ep, t, vals) for (ep, t), vals in grouped.items()]

    def append_schema_change(self, twin: str, change: SchemaChange) -> None:
        self._write("INSERT INTO schema_changes (twin, change) VALUES (%s, %s)",
                    [(twin, json.dumps(change.to_dict()))])

    def schema_changes(self, twin: str) -> list[SchemaChange]:
        rows = self._read("SELECT change FROM schema_changes WHERE twin = %s ORDER BY id",
                          [twin])
        return [SchemaChange.from_dict(json.loads(r[0])) for r in rows]

    def append_note(self, twin: str, note: Note) -> None:
        self._write("INSERT INTO notes (twin, at, text) VALUES (%s, %s, %s)",
                    [(twin, note.at, note.text)])

    def notes(self, twin: str, as_of: float | None = None) -> list[Note]:
        sql = "SELECT at, text FROM notes WHERE twin = %s"
        args: list[Any] = [twin]
        if as_of is not None:
            sql += " AND at <= %s"
            args.append(as_of)
        return [Note(at, text) for at, text in self._read(sql + " ORDER BY id", args)]

    def append_record(self, twin: str, kind: str, payload: dict[str, Any]) -> Record:
        at, text = time.time(), json.dumps(payload, allow_nan=False)
        with self._lock:
            try:
                row = self._conn().execute(
                    "INSERT INTO records (twin, kind, at, payload) VALUES (%s, %s, %s, %s)"
                    " RETURNING id", (twin, kind, at, text)).fetchone()
            except self._psycopg.Error as exc:
                raise StoreError(f"write to PostgreSQL failed: {exc}") from exc
        assert row is not None
        return Record(int(row[0]), kind, at, json.loads(text))

    def records(self, twin: str, kind: str | None = None, after: int = 0,
                limit: int | None = None) -> list[Record]:
        sql = "SELECT id, kind, at, payload FROM records WHERE twin = %s AND id > %s"
        args: list[Any] = [twin, after]
        if kind is not None:
            sql += " AND kind = %s"
            args.append(kind)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT %s"
            args.append(int(limit))
        return [Record(int(i), k, at, json.loads(p)) for i, k, at, p in self._read(sql, args)]

    def twins(self) -> list[str]:
        rows = self._read("SELECT twin FROM observations UNION SELECT twin FROM schema_changes"
                          " UNION SELECT twin FROM notes", [])
        return sorted(r[0] for r in rows)

    def close(self) -> None:
        with self._lock:
            self._db.close()
