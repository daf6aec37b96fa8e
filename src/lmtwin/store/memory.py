"""An in-memory store: for tests and benchmarks where durability does not matter."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from lmtwin.schema import SchemaChange
from lmtwin.store.base import Note, Record
from lmtwin.types import Observation


class MemoryStore:
    """Lists in memory; ``transaction()`` holds a lock and restores them on an exception."""

    def __init__(self) -> None:
        # rows: (twin, episode, t, variable, value, schema_version, recorded_at)
        self._rows: list[tuple[str, str, float, str, float, int, float]] = []
        self._changes: dict[str, list[SchemaChange]] = {}
        self._notes: dict[str, list[Note]] = {}
        self._records: list[tuple[str, Record]] = []
        self._lock = threading.RLock()
        self._depth = 0

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """The block's writes stay, or (on an exception) none of them does. Blocks nest;
        other threads' transactions wait."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            # rows and records only grow: their lengths mark the restore point
            saved = (len(self._rows), len(self._records), copy.deepcopy(self._changes),
                     copy.deepcopy(self._notes))
            self._depth = 1
            try:
                yield
            except BaseException:
                del self._rows[saved[0]:], self._records[saved[1]:]
                self._changes, self._notes = saved[2], saved[3]
                raise
            finally:
                self._depth = 0

    def append(self, twin: str, observations: Sequence[Observation], schema_version: int) -> None:
        now = time.time()
        self._rows.extend(
            (twin, o.episode, float(o.t), k, float(v), schema_version, now)
            for o in observations
            for k, v in o.values.items()
        )

    def observations(
        self,
        twin: str,
        episode: str | None = None,
        variable: str | None = None,
        t_from: float | None = None,
        t_to: float | None = None,
        as_of: float | None = None,
    ) -> list[Observation]:
        grouped: dict[tuple[str, float], dict[str, float]] = {}
        for tw, ep, t, var, value, _, rec in self._rows:
            if tw != twin or (episode is not None and ep != episode):
                continue
            if variable is not None and var != variable:
                continue
            if (t_from is not None and t < t_from) or (t_to is not None and t > t_to):
                continue
            if as_of is not None and rec > as_of:
                continue
            grouped.setdefault((ep, t), {})[var] = value
        return [Observation(ep, t, vals) for (ep, t), vals in sorted(grouped.items())]

    def append_schema_change(self, twin: str, change: SchemaChange) -> None:
        self._changes.setdefault(twin, []).append(change)

    def schema_changes(self, twin: str) -> list[SchemaChange]:
        return list(self._changes.get(twin, []))

    def append_note(self, twin: str, note: Note) -> None:
        self._notes.setdefault(twin, []).append(note)

    def notes(self, twin: str, as_of: float | None = None) -> list[Note]:
        return [n for n in self._notes.get(twin, []) if as_of is None or n.at <= as_of]

    def append_record(self, twin: str, kind: str, payload: dict[str, Any]) -> Record:
        # a JSON round trip: the same payload types (and refusals) as the durable stores
        record = Record(len(self._records) + 1, kind, time.time(),
                        json.loads(json.dumps(payload, allow_nan=False)))
        self._records.append((twin, record))
        return record

    def records(
        self, twin: str, kind: str | None = None, after: int = 0, limit: int | None = None
    ) -> list[Record]:
        out = [r for tw, r in self._records
               if tw == twin and r.id > after and (kind is None or r.kind == kind)]
        return out if limit is None else out[:limit]

    def twins(self) -> list[str]:
        names = {r[0] for r in self._rows} | set(self._changes) | set(self._notes)
        return sorted(names)

    def close(self) -> None:
        pass
