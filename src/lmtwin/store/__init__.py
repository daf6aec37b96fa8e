"""Durable, append-only history of a twin: observations, schema changes, knowledge notes,
and per-twin logs of records (alerts, audit). SQLite (default), PostgreSQL (``PostgresStore``,
extra ``service``; imported on first use) and memory, behind one ``Store`` protocol."""

from typing import Any

from lmtwin.store.base import Note, Record, SQLStore, Store, check_store
from lmtwin.store.memory import MemoryStore
from lmtwin.store.sqlite import SQLiteStore

__all__ = ["MemoryStore", "Note", "PostgresStore", "Record", "SQLStore", "SQLiteStore", "Store",
           "check_store"]


def __getattr__(name: str) -> Any:
    if name == "PostgresStore":  # psycopg is an optional dependency
        from lmtwin.store.postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module 'lmtwin.store' has no attribute {name!r}")
