"""Tables the service owns beside the twins' data: twins' settings, idempotency keys and
API keys. They live in the twins' store (SQLite file or PostgreSQL) under a ``service_``
prefix and go through the store's ``execute``/``transaction``: one storage layer."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lmtwin.store import SQLStore

# an expired key not purged yet is replaced, not a conflict (replay ignores it already)
INSERT_KEY = ("INSERT INTO service_idempotency (twin, key, created_at, response)"
              " VALUES (?, ?, ?, ?) ON CONFLICT (twin, key) DO UPDATE SET"
              " created_at = excluded.created_at, response = excluded.response")

_TABLES = [
    """CREATE TABLE IF NOT EXISTS service_twins (
        name TEXT PRIMARY KEY,
        created_at DOUBLE PRECISION NOT NULL,
        archived_at DOUBLE PRECISION,
        config TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS service_idempotency (
        twin TEXT NOT NULL,
        key TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        response TEXT NOT NULL,
        PRIMARY KEY (twin, key))""",
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
    """The service's tables, read and written through the twins' store (``execute`` and
    ``transaction``), so one transaction can span both. Thread-safe as the store is."""

    def __init__(self, store: SQLStore) -> None:
        self.store = store
        for sql in _TABLES:
            store.execute(sql)

    def execute(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One statement with ``?`` placeholders (StoreError on failure)."""
        return self.store.execute(sql, args)

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

    def remember(self, twin: str, key: str, response: str) -> None:
        """Record the answer given to ``key`` (in the caller's transaction, with the rows);
        an expired record not purged yet is replaced."""
        self.execute(INSERT_KEY, (twin, key, time.time(), response))

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

    def key_active(self, key_id: str) -> bool:
        return bool(self.execute("SELECT 1 FROM service_keys WHERE id = ? AND revoked_at IS"
                                 " NULL", (key_id,)))

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

