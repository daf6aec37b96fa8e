"""Tables the service owns beside the twins' store: twins' settings, idempotency keys
and API keys. They live in the same database (SQLite file or PostgreSQL) under a
``service_`` prefix, so the library's store stays unchanged."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from typing import Any

from lmtwin.errors import DependencyNotInstalled, StoreError

IDEMPOTENCY_TABLE = """CREATE TABLE IF NOT EXISTS service_idempotency (
        twin TEXT NOT NULL,
        key TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        response TEXT NOT NULL,
        PRIMARY KEY (twin, key))"""

_TABLES = [
    """CREATE TABLE IF NOT EXISTS service_twins (
        name TEXT PRIMARY KEY,
        created_at DOUBLE PRECISION NOT NULL,
        archived_at DOUBLE PRECISION,
        config TEXT NOT NULL)""",
    IDEMPOTENCY_TABLE,
    """CREATE TABLE IF NOT EXISTS service_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        twins TEXT NOT NULL,
        scopes TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        revoked_at DOUBLE PRECISION)""",
]


class ServiceDB:
    """A DB-API connection with the service's tables. Thread-safe (one lock)."""

    def __init__(self, url: str,
                 shared: tuple[sqlite3.Connection, threading.Lock] | None = None) -> None:
        """``shared``: an SQLite connection and its lock to use (the store's), so that
        'memory' stores and the service's tables are one database."""
        self.url = url
        self._lock = threading.Lock() if shared is None else shared[1]
        self._pg = url.startswith(("postgresql://", "postgres://"))
        self._db: Any
        self._errors: tuple[type[Exception], ...]
        try:
            if shared is not None:
                self._db = shared[0]
                self._errors = (sqlite3.Error,)
            elif self._pg:
                import psycopg

                from lmtwin.service.postgres import connect

                self._errors = (psycopg.Error,)
                self._db = connect(url)
            else:
                path = ":memory:" if url == "memory" else url
                self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA busy_timeout=5000")
                self._errors = (sqlite3.Error,)
            for sql in _TABLES:
                self._db.execute(sql)
        except ImportError as exc:
            raise DependencyNotInstalled("psycopg", "service") from exc
        except Exception as exc:
            if isinstance(exc, (sqlite3.Error, *getattr(self, "_errors", ()))):
                raise StoreError(f"cannot open the service tables: {exc}") from exc
            raise

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self._pg else sql

    def execute(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                if self._pg and (self._db.closed or self._db.broken):
                    from lmtwin.service.postgres import connect

                    self._db = connect(self.url)  # the server dropped it (a restart)
                cur = self._db.execute(self._sql(sql), tuple(args))
                return list(cur.fetchall()) if cur.description else []
            except self._errors as exc:
                raise StoreError(f"service table access failed: {exc}") from exc

    # --- twins -------------------------------------------------------------------
    def twins(self, archived: bool = False) -> dict[str, dict[str, Any]]:
        rows = self.execute("SELECT name, created_at, archived_at, config FROM service_twins")
        return {name: {"created_at": c, "archived_at": a, "config": json.loads(cfg)}
                for name, c, a, cfg in rows if archived or a is None}

    def add_twin(self, name: str, config: dict[str, Any]) -> bool:
        """Register a twin; False when the name was ever taken (archived names stay taken,
        because the store keeps their history)."""
        rows = self.execute("INSERT INTO service_twins (name, created_at, config) VALUES"
                            " (?, ?, ?) ON CONFLICT DO NOTHING RETURNING name",
                            (name, time.time(), json.dumps(config)))
        return bool(rows)

    def set_config(self, name: str, config: dict[str, Any]) -> None:
        self.execute("UPDATE service_twins SET config = ? WHERE name = ?",
                     (json.dumps(config), name))

    def archive_twin(self, name: str) -> None:
        self.execute("UPDATE service_twins SET archived_at = ? WHERE name = ?",
                     (time.time(), name))

    # --- idempotency ---------------------------------------------------------------
    def replay(self, twin: str, key: str, since: float) -> dict[str, Any] | None:
        """The answer first given to ``key``, if it was recorded at ``since`` or later."""
        rows = self.execute("SELECT response FROM service_idempotency WHERE twin = ? AND key = ?"
                            " AND created_at >= ?", (twin, key, since))
        return json.loads(rows[0][0]) if rows else None

    def forget_before(self, at: float) -> None:
        self.execute("DELETE FROM service_idempotency WHERE created_at < ?", (at,))

    # --- API keys ---------------------------------------------------------------------
    def add_key(self, key_id: str, name: str, key_hash: str, twins: list[str],
                scopes: list[str]) -> float:
        now = time.time()
        self.execute("INSERT INTO service_keys (id, name, hash, twins, scopes, created_at)"
                     " VALUES (?, ?, ?, ?, ?, ?)",
                     (key_id, name, key_hash, json.dumps(twins), json.dumps(scopes), now))
        return now

    def key_by_hash(self, key_hash: str) -> dict[str, Any] | None:
        rows = self.execute("SELECT id, name, twins, scopes, created_at FROM service_keys"
                            " WHERE hash = ? AND revoked_at IS NULL", (key_hash,))
        if not rows:
            return None
        key_id, name, twins, scopes, created = rows[0]
        return {"id": key_id, "name": name, "twins": json.loads(twins),
                "scopes": json.loads(scopes), "created_at": created}

    def has_admin_key(self) -> bool:
        rows = self.execute("SELECT scopes FROM service_keys WHERE revoked_at IS NULL")
        return any("admin" in json.loads(scopes) for (scopes,) in rows)

    def keys(self) -> list[dict[str, Any]]:
        rows = self.execute("SELECT id, name, twins, scopes, created_at, revoked_at"
                            " FROM service_keys ORDER BY created_at")
        return [{"id": i, "name": n, "twins": json.loads(t), "scopes": json.loads(s),
                 "created_at": c, "revoked_at": r} for i, n, t, s, c, r in rows]

    def revoke_key(self, key_id: str) -> bool:
        rows = self.execute("UPDATE service_keys SET revoked_at = ? WHERE id = ?"
                            " AND revoked_at IS NULL RETURNING id", (time.time(), key_id))
        return bool(rows)

    def close(self) -> None:
        with self._lock:
            self._db.close()  # closing a shared connection twice is harmless
