"""Durable, append-only history of a twin: observations, schema changes, knowledge notes."""

from lmtwin.store.base import Note, Record, Store, check_store
from lmtwin.store.memory import MemoryStore
from lmtwin.store.sqlite import SQLiteStore

__all__ = ["MemoryStore", "Note", "Record", "SQLiteStore", "Store", "check_store"]
