"""Moved to ``lmtwin.store.postgres``; this name stays until the last import of it
(tests/test_conformance.py) changes."""

from lmtwin.store.postgres import PostgresStore

__all__ = ["PostgresStore"]
