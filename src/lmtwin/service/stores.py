"""The twins' store as the service opens it: one storage layer for the twins' data and
the service's own tables (``service_*``, see ``db.py``), with explicit transactions.

The service needs two things beyond ``lmtwin.store.Store``: ``transaction()`` (a block
whose writes commit together, or not at all) and ``execute(sql, args)`` (a statement
with ``?`` placeholders, for its own tables). ``lmtwin.store.postgres.PostgresStore``
has both; ``TransactionalSQLiteStore`` adds them to the library's ``SQLiteStore``.

    store = open_store("twins.db")          # or 'memory', or a postgresql:// URL
    with store.transaction():               # observations and their idempotency record
        twin.observe_many(rows)             # (the twin writes through this store)
        store.execute("INSERT INTO service_idempotency ...", [...])
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from lmtwin.errors import StoreError
from lmtwin.store import SQLiteStore, Store


class TransactionalStore(Store, Protocol):
    """A Store with explicit transactions and plain statements (what the service uses)."""

    def transaction(self) -> Any:
        """A context manager: the calling thread's writes inside commit together."""
        ...

    def execute(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One statement with ``?`` placeholders; its rows."""
        ...


def open_store(url: str) -> TransactionalStore:
    """The store for a settings ``store`` value: an SQLite path, 'memory', or a
    postgresql:// URL."""
    if url.startswith(("postgresql://", "postgres://")):
        from lmtwin.store.postgres import PostgresStore

        return PostgresStore(url)
    return TransactionalSQLiteStore(":memory:" if url == "memory" else url)


class TransactionalSQLiteStore(SQLiteStore):
    """``SQLiteStore`` with ``transaction()`` and ``execute()``, and ``synchronous=FULL``:
    a commit is fsynced before it returns, so an acknowledged write survives a power
    loss or an OS crash too, not only the process being killed (WAL + NORMAL).

    The connection's lock is re-entrant and a transaction holds it until it ends: other
    threads wait, and the same thread's writes (the twin's appends) join it."""

    def __init__(self, path: str) -> None:
        SQLiteStore.__init__(self, path, synchronous="FULL")
        self._lock = threading.RLock()  # type: ignore[assignment]
        self._depth = 0
        self._db.execute("PRAGMA busy_timeout=5000")

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

    def _rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def _sql(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, tuple(args))
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    def execute(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One statement; joins an open ``transaction()``, else commits at once."""
        with self._lock:
            cur = self._sql(sql, args)
            return list(cur.fetchall()) if cur.description else []

    def _write(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        with self._lock:
            if not self._depth:
                SQLiteStore._write(self, sql, rows)  # its own transaction
                return
            try:
                self._db.executemany(sql, rows)
            except sqlite3.Error as exc:
                raise StoreError(f"write to {self.path} failed: {exc}") from exc
