"""Approval policy per tool, and the per-twin actuation rate limit."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, cast

from lmtwin.agent.tools import TOOLS, Kind
from lmtwin.errors import ActuationRateLimited

Decision = Literal["auto", "ask", "deny"]
DECISIONS: tuple[Decision, ...] = ("auto", "ask", "deny")
DEFAULTS: dict[Kind, Decision] = {"read": "auto", "note": "auto", "schema": "ask",
                                  "actuate": "ask"}


@dataclass
class Policy:
    """What happens to a valid call: ``auto`` runs it, ``ask`` queues it for approval,
    ``deny`` refuses it. ``rules`` maps a tool name or a kind (read, note, schema,
    actuate) to a decision; a tool's own rule wins over its kind's, and kinds default to
    reads and notes ``auto``, schema changes and actuation ``ask``.

    Example:
        >>> Policy({"actuate": "deny"}).decide("actuate")
        'deny'
    """

    rules: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, value in self.rules.items():
            if key not in TOOLS and key not in DEFAULTS:
                raise ValueError(f"no tool or kind {key!r}; tools: {', '.join(TOOLS)}; "
                                 f"kinds: {', '.join(DEFAULTS)}")
            if value not in DECISIONS:
                raise ValueError(f"{key}: {value!r} is not one of {', '.join(DECISIONS)}")

    def decide(self, tool: str) -> Decision:
        kind = TOOLS[tool].kind
        return cast(Decision, self.rules.get(tool, self.rules.get(kind, DEFAULTS[kind])))

    @classmethod
    def parse(cls, text: str) -> Policy:
        """From 'actuate=auto,schema=deny' (the CLI's form)."""
        rules = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"expected NAME=auto|ask|deny, got {part!r}")
            rules[key.strip()] = value.strip()
        return cls(rules)


class RateLimiter:
    """At most ``limit`` actuations per ``window`` seconds (a sliding window)."""

    def __init__(self, limit: int = 10, window: float = 60.0,
                 past: Iterable[float] = ()) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self._times: collections.deque[float] = collections.deque(sorted(past))
        self._lock = threading.Lock()

    def take(self, now: float | None = None) -> None:
        """Count one actuation now, or raise ActuationRateLimited."""
        now = time.time() if now is None else now
        with self._lock:
            while self._times and self._times[0] <= now - self.window:
                self._times.popleft()
            if len(self._times) >= self.limit:
                wait = self._times[0] + self.window - now
                raise ActuationRateLimited(
                    f"at most {self.limit} actuations per {self.window:g} s on this twin; "
                    f"retry in {wait:.0f} s", wait)
            self._times.append(now)
