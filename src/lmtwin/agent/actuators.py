"""Actuators: how an approved setting reaches the real system. The user implements one."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Actuator(Protocol):
    """Applies action values to the real system of twin ``twin``.

    ``apply`` is called only for validated, approved calls; it returns anything
    JSON-ready to report (or None) and raises on failure (the agent records the error).
    """

    def apply(self, twin: str, values: dict[str, float]) -> Any: ...


class LoggingActuator:
    """Records every setting instead of applying it (tests, demos, dry runs); with
    ``path``, also appends one JSON line per setting to that file."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.applied: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def apply(self, twin: str, values: dict[str, float]) -> dict[str, Any]:
        entry = {"at": time.time(), "twin": twin, "values": dict(values)}
        with self._lock:
            self.applied.append(entry)
            if self.path is not None:
                with self.path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(entry) + "\n")
        return {"applied": dict(values)}
