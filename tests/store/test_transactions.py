"""Explicit transactions and a caller's own statements (``SQLStore``) on SQLite and a
real PostgreSQL server: all or nothing, nesting, other threads wait."""

from __future__ import annotations

import threading
import time

import pytest

from lmtwin.errors import StoreError
from lmtwin.schema import SchemaChange, Variable
from lmtwin.store import SQLiteStore, SQLStore
from lmtwin.types import Observation
from tests.service.test_postgres import pg_url  # noqa: F401 (a real PostgreSQL server)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path) -> SQLStore:
    if request.param == "sqlite":
        return SQLiteStore(tmp_path / "t.db", synchronous="FULL")
    from lmtwin.store.postgres import PostgresStore

    return PostgresStore(request.getfixturevalue("pg_url"))


def test_a_transaction_commits_together_or_not_at_all(store):
    assert isinstance(store, SQLStore)
    twin = f"tx{time.time_ns()}"
    store.execute("CREATE TABLE IF NOT EXISTS side (twin TEXT, n INTEGER)")
    with pytest.raises(RuntimeError), store.transaction():
        store.append_schema_change(twin, SchemaChange(1, 1.0, "add", Variable("x")))
        store.append(twin, [Observation("e", 0.0, {"x": 1.0})], 1)
        store.execute("INSERT INTO side (twin, n) VALUES (?, ?)", [twin, 1])
        raise RuntimeError("after the writes, before the end")
    assert store.observations(twin) == [] and store.schema_changes(twin) == []
    assert store.execute("SELECT n FROM side WHERE twin = ?", [twin]) == []
    with store.transaction():
        store.append(twin, [Observation("e", 0.0, {"x": 1.0})], 1)
        with store.transaction():  # nested: part of the outer one
            store.execute("INSERT INTO side (twin, n) VALUES (?, ?)", [twin, 2])
        # another thread's write waits for the end of the transaction
        other = threading.Thread(target=store.append, args=(
            twin, [Observation("f", 0.0, {"x": 5.0})], 1))
        other.start()
        other.join(0.3)
        assert other.is_alive() and [o.episode for o in store.observations(twin)] == ["e"]
    other.join(10)
    assert [o.episode for o in store.observations(twin)] == ["e", "f"]
    assert store.execute("SELECT n FROM side WHERE twin = ?", [twin]) == [(2,)]
    with pytest.raises(StoreError):
        store.execute("SELECT nope FROM side")
    store.close()




def test_sqlite_refuses_an_unknown_synchronous_mode(tmp_path):
    with pytest.raises(StoreError, match="synchronous"):
        SQLiteStore(tmp_path / "t.db", synchronous="SOMETIMES")
