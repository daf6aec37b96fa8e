"""The Store protocol, and a conformance check every implementation must pass.

Rows are long-format (twin, episode, t, variable, value, schema version, recorded at), so
a schema change needs no migration and history is readable as of any past time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from lmtwin.schema import SchemaChange, Variable
from lmtwin.types import Note, Observation


@dataclass(frozen=True)
class Record:
    """One entry of a twin's append-only log of a given ``kind`` (an alert, an alert's
    acknowledgement, an audit event): ``id`` rises with insertion order across kinds,
    ``at`` is the wall-clock time it was written, ``payload`` a JSON-ready mapping."""

    id: int
    kind: str
    at: float
    payload: dict[str, Any]


@runtime_checkable
class Store(Protocol):
    """Append-only storage. A call that returns has committed its rows durably."""

    def append(self, twin: str, observations: Sequence[Observation], schema_version: int) -> None:
        """Store observations atomically: all of them or none."""
        ...

    def observations(
        self,
        twin: str,
        episode: str | None = None,
        variable: str | None = None,
        t_from: float | None = None,
        t_to: float | None = None,
        as_of: float | None = None,
    ) -> list[Observation]:
        """Observations in (episode, t) order, each with the values recorded by ``as_of``."""
        ...

    def append_schema_change(self, twin: str, change: SchemaChange) -> None: ...

    def schema_changes(self, twin: str) -> list[SchemaChange]: ...

    def append_note(self, twin: str, note: Note) -> None: ...

    def notes(self, twin: str, as_of: float | None = None) -> list[Note]: ...

    def append_record(self, twin: str, kind: str, payload: dict[str, Any]) -> Record:
        """Append one entry to the twin's log of ``kind``; never updated or deleted."""
        ...

    def records(
        self, twin: str, kind: str | None = None, after: int = 0, limit: int | None = None
    ) -> list[Record]:
        """Entries with ``id > after`` (of ``kind``, or all kinds), oldest first."""
        ...

    def twins(self) -> list[str]: ...

    def transaction(self) -> AbstractContextManager[None]:
        """A block whose writes (this thread's) commit together at its end, or none of
        them does (on an exception). Blocks nest: an inner block joins the outer one."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class SQLStore(Store, Protocol):
    """A store on an SQL database (SQLite, PostgreSQL): also runs a caller's own
    statements, for its own tables (the service keeps its keys and twins this way)."""

    def execute(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One statement with ``?`` placeholders; its rows. Joins an open
        ``transaction()``, else commits at once."""
        ...


def check_store(store: Store) -> None:
    """Raise AssertionError unless ``store`` behaves as the protocol says."""
    twin = f"check-{time.time_ns()}"
    assert isinstance(store, Store)
    store.append_schema_change(twin, SchemaChange(1, 1.0, "add", Variable("x")))
    store.append(twin, [Observation("e1", 0.0, {"x": 1.0}), Observation("e1", 1.0, {"x": 2.0})], 1)
    before = time.time()
    time.sleep(0.01)
    store.append(twin, [Observation("e1", 2.0, {"x": 3.5, "y": -1.0})], 2)
    got = store.observations(twin)
    assert [o.t for o in got] == [0.0, 1.0, 2.0], got
    assert got[2].values == {"x": 3.5, "y": -1.0}
    assert store.observations(twin, variable="y")[0].values == {"y": -1.0}
    assert [o.t for o in store.observations(twin, t_from=1.0, t_to=1.5)] == [1.0]
    past = store.observations(twin, as_of=before)
    assert [o.t for o in past] == [0.0, 1.0], past
    assert store.observations(twin, episode="nope") == []
    assert [c.variable.name for c in store.schema_changes(twin)] == ["x"]
    store.append_note(twin, Note(5.0, "a fact"))
    assert [n.text for n in store.notes(twin)] == ["a fact"]
    assert store.notes(twin, as_of=4.0) == []
    first = store.append_record(twin, "alert", {"variable": "x", "p": 0.001})
    second = store.append_record(twin, "audit", {"event": "request", "text": "hi"})
    assert second.id > first.id and first.kind == "alert"
    assert [r.payload for r in store.records(twin, "alert")] == [{"variable": "x", "p": 0.001}]
    assert [r.id for r in store.records(twin)] == [first.id, second.id]
    assert [r.id for r in store.records(twin, after=first.id)] == [second.id]
    assert len(store.records(twin, limit=1)) == 1
    assert store.records(f"{twin}-other") == []
    assert twin in store.twins()
    _check_transaction(store, twin)


class _Abort(Exception):
    pass


def _check_transaction(store: Store, twin: str) -> None:
    """All or nothing: an exception inside a (nested) block leaves no trace of it."""
    before = (store.observations(twin), store.schema_changes(twin), store.notes(twin),
              store.records(twin))
    try:
        with store.transaction():
            store.append(twin, [Observation("e2", 0.0, {"x": 9.0})], 2)
            store.append_schema_change(twin, SchemaChange(3, 3.0, "add", Variable("z")))
            with store.transaction():
                store.append_note(twin, Note(6.0, "rolled back"))
                store.append_record(twin, "audit", {"event": "rolled back"})
            raise _Abort
    except _Abort:
        pass
    after = (store.observations(twin), store.schema_changes(twin), store.notes(twin),
             store.records(twin))
    assert after == before, (before, after)
    with store.transaction():
        store.append(twin, [Observation("e2", 0.0, {"x": 9.0})], 2)
        with store.transaction():
            store.append_note(twin, Note(7.0, "kept"))
    assert store.observations(twin, episode="e2")[0].values == {"x": 9.0}
    assert store.notes(twin)[-1].text == "kept"
