"""The twins' store as the service opens it: one storage layer for the twins' data and
the service's own tables (``service_*``, see ``db.py``), with explicit transactions.

The service needs ``transaction()`` (a block whose writes commit together, or not at all)
and ``execute(sql, args)`` (a statement with ``?`` placeholders, for its own tables): the
library's ``SQLStore`` protocol, which ``SQLiteStore`` and ``PostgresStore`` implement.

    store = open_store("twins.db")          # or 'memory', or a postgresql:// URL
    with store.transaction():               # observations and their idempotency record
        twin.observe_many(rows)             # (the twin writes through this store)
        store.execute("INSERT INTO service_idempotency ...", [...])
"""

from __future__ import annotations

from lmtwin.store import SQLiteStore, SQLStore


def open_store(url: str) -> SQLStore:
    """The store for a settings ``store`` value: an SQLite path, 'memory', or a
    postgresql:// URL.

    SQLite runs with ``synchronous=FULL``: a commit is fsynced before it returns, so an
    acknowledged write survives a power loss or an OS crash too, not only the process
    being killed (the library's default, WAL + NORMAL, promises the latter only)."""
    if url.startswith(("postgresql://", "postgres://")):
        from lmtwin.store.postgres import PostgresStore

        return PostgresStore(url)
    return SQLiteStore(":memory:" if url == "memory" else url, synchronous="FULL")
