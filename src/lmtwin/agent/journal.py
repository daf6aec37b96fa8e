"""The audit trail and the approval queue, both append-only records in the twin's store.

Audit entries (kind ``audit``) record every request, proposed call, validation result,
approval and outcome. The approval queue (kind ``approval``) is a log of states per call
id: ``pending`` when queued, then one ``approved`` or ``rejected``; a call's state is its
last entry, so the queue survives a restart and no entry is ever changed.
"""

from __future__ import annotations

import json
import time
from typing import Any

from lmtwin.store import Store
from lmtwin.store.base import Record

AUDIT, APPROVAL = "audit", "approval"
_MAX_RESULT = 4000


def short(value: Any) -> Any:
    """A JSON-ready value, cut to a few kB so one audit entry stays small."""
    text = json.dumps(value, default=str)
    if len(text) <= _MAX_RESULT:
        return json.loads(text)
    return {"truncated": text[:_MAX_RESULT], "chars": len(text)}


class Journal:
    """The audit log and approval queue of one twin in ``store``."""

    def __init__(self, store: Store, twin: str) -> None:
        self.store = store
        self.twin = twin

    def audit(self, event: str, **payload: Any) -> Record:
        return self.store.append_record(self.twin, AUDIT, {"event": event, **short(payload)})

    def entries(self, after: int = 0, limit: int | None = None) -> list[Record]:
        return self.store.records(self.twin, AUDIT, after=after, limit=limit)

    def queue(self, call_id: str, status: str, **payload: Any) -> Record:
        return self.store.append_record(
            self.twin, APPROVAL, {"call_id": call_id, "status": status, **short(payload)})

    def calls(self) -> dict[str, dict[str, Any]]:
        """Every queued call's latest state, with the original call merged in."""
        state: dict[str, dict[str, Any]] = {}
        for rec in self.store.records(self.twin, APPROVAL):
            entry = state.setdefault(rec.payload["call_id"], {})
            entry.update(rec.payload)
            entry.setdefault("queued_at", rec.at)
            entry["updated_at"] = rec.at
        return state

    def actuation_times(self, since: float) -> list[float]:
        """When actuations ran (from the audit), to seed the rate limit after a restart."""
        return [r.at for r in self.entries() if r.at >= since
                and r.payload.get("event") == "executed" and r.payload.get("tool") == "actuate"]


def now() -> float:
    return time.time()
