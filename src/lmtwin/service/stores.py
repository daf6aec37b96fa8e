"""The twins' store as the service opens it: observations and the idempotency record of
the request that brought them are committed in one transaction, so a crash can never
separate them (a retry after a crash is either replayed or stored, never doubled).

``Keyed`` is the one extra the service needs from a store: ``with store.keyed(...)``
around an append. The SQLite flavour subclasses the library's ``SQLiteStore`` and
reuses its connection and lock, so the library itself stays unchanged.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from lmtwin.errors import StoreError
from lmtwin.service.db import IDEMPOTENCY_TABLE
from lmtwin.store import SQLiteStore
from lmtwin.types import Observation

# an expired key not purged yet is replaced, not a conflict (replay ignores it already)
INSERT_KEY = ("INSERT INTO service_idempotency (twin, key, created_at, response)"
              " VALUES (?, ?, ?, ?) ON CONFLICT (twin, key) DO UPDATE SET"
              " created_at = excluded.created_at, response = excluded.response")


class Keyed:
    """A per-thread idempotency record to write with the next append."""

    def __init__(self) -> None:
        self._pending = threading.local()

    @contextmanager
    def keyed(self, twin: str, key: str | None, response: str) -> Iterator[None]:
        self._pending.value = None if key is None else (twin, key, time.time(), response)
        try:
            yield
        finally:
            self._pending.value = None

    def _take_key(self) -> tuple[str, str, float, str] | None:
        value: tuple[str, str, float, str] | None = getattr(self._pending, "value", None)
        self._pending.value = None
        return value


class KeyedSQLiteStore(SQLiteStore, Keyed):
    def __init__(self, path: str) -> None:
        # FULL: a commit is fsynced before it returns, so an acknowledged write survives
        # a power loss or OS crash too, not only the process being killed (WAL + NORMAL)
        SQLiteStore.__init__(self, path, synchronous="FULL")
        Keyed.__init__(self)
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute(IDEMPOTENCY_TABLE)

    @property
    def connection(self) -> tuple[sqlite3.Connection, threading.Lock]:
        """The connection and its lock, shared with the service's own tables."""
        return self._db, self._lock

    def append(self, twin: str, observations: Sequence[Observation], schema_version: int) -> None:
        key = self._take_key()
        if key is None:
            SQLiteStore.append(self, twin, observations, schema_version)
            return
        now = time.time()
        rows: list[tuple[Any, ...]] = [
            (twin, o.episode, float(o.t), k, float(v), schema_version, now)
            for o in observations for k, v in o.values.items()]
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "INSERT INTO observations (twin, episode, t, variable, value,"
                    " schema_version, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                self._db.execute(INSERT_KEY, key)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StoreError(f"write to {self.path} failed: {exc}") from exc
