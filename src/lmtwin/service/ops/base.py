"""What every part of the service shares: the loaded twins and their entries.

``ServiceBase`` loads a twin from the store on first use and keeps it in memory with
the service's caches beside it (latest state per episode, episode times, Kalman
filters). The operations live in the sibling modules, one per route group, and
``lmtwin.service.core.TwinService`` combines them.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lmtwin.assimilation import Assimilator, Noise
from lmtwin.errors import StoreError
from lmtwin.intervene.alerts import Monitor
from lmtwin.llm.base import LLMBackend
from lmtwin.predictors import LLMPredictor, LocalRidge, Persistence, Predictor
from lmtwin.schema import SchemaChange
from lmtwin.service.db import ServiceDB
from lmtwin.service.errors import TwinNotFound, TwinUnavailable
from lmtwin.service.events import EventHub
from lmtwin.service.settings import Settings
from lmtwin.store import SQLStore
from lmtwin.twin import Twin
from lmtwin.types import Observation

log = logging.getLogger("lmtwin.service")


@dataclass
class Entry:
    """A loaded twin with what the service keeps beside it."""

    twin: Twin
    config: dict[str, Any]
    created_at: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    states: dict[str, dict[str, float]] = field(default_factory=dict)
    last_t: dict[str, float] = field(default_factory=dict)
    # per episode, an immutable view of the latest state, replaced (never mutated) after
    # each ingest, so state reads need no lock and never wait for a commit
    views: dict[str, dict[str, Any]] = field(default_factory=dict)
    assimilator: Assimilator | None = None
    monitor: Monitor | None = None  # anomaly and drift alerts (lmtwin.intervene.alerts)

    def noise(self) -> dict[str, Noise]:
        return {k: Noise(v["sensor"], v["process"]) for k, v in self.config["noise"].items()}


def jsonable(value: Any) -> Any:
    """Numpy scalars and arrays, and non-finite floats, made JSON-safe."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def change_dict(change: SchemaChange) -> dict[str, Any]:
    return change.to_dict()


class ServiceBase:
    """The twins on one store, loaded on first use; see ``TwinService``."""

    settings: Settings
    store: SQLStore
    db: ServiceDB
    events: EventHub
    backend: LLMBackend | None
    counters: dict[str, int]
    _twins: dict[str, Entry]
    _unavailable: dict[str, str]
    _keys_purged_at: float  # when expired idempotency keys were last purged
    _lock: threading.Lock

    def _predictors(self) -> list[Predictor]:
        predictors: list[Predictor] = [Persistence(), LocalRidge()]
        if self.backend is not None:
            predictors.append(LLMPredictor(self.backend))
        return predictors

    def _load(self, name: str, meta: dict[str, Any]) -> Entry:
        config = meta["config"]
        twin = Twin(name, store=self.store, predictors=self._predictors(),
                    strict=config.get("strict", True), level=config.get("level", 0.9))
        entry = Entry(twin, config, meta["created_at"])
        # anomaly and drift alerts: stored, and pushed as SSE events
        entry.monitor = Monitor(twin, alpha=self.settings.alert_alpha,
                                spike=self.settings.alert_spike,
                                window=self.settings.alert_window,
                                threshold=self.settings.alert_threshold,
                                refractory=self.settings.alert_refractory)
        entry.monitor.subscribe(lambda a: self.events.publish(name, "alert", a.to_dict()))
        if self.settings.tune_every:
            twin.start_tuner(every=self.settings.tune_every)
        history = twin.history()
        for obs in history:
            entry.states.setdefault(obs.episode, {}).update(obs.values)
            entry.last_t[obs.episode] = obs.t
        if entry.noise():
            # the filter forgets its start within a few readings: rebuild it from the
            # last readings of each episode, not the whole history
            tail: dict[str, list[Observation]] = {}
            for obs in history:
                tail.setdefault(obs.episode, []).append(obs)
            assimilator = self._assimilator(entry)
            for rows in tail.values():
                for obs in rows[-self.settings.assimilation_replay:]:
                    assimilator.update(obs)
        return entry

    def _assimilator(self, entry: Entry) -> Assimilator:
        if entry.assimilator is None:
            entry.assimilator = Assimilator(entry.twin, entry.noise(),
                                            using=self.settings.assimilation_predictors)
        return entry.assimilator

    def entry(self, name: str) -> Entry:
        """The loaded twin; ``TwinNotFound``, or ``TwinUnavailable`` when its stored data
        cannot be loaded (remembered, so every route answers at once; it can be archived)."""
        entry = self._twins.get(name)  # the common case, without waiting for a load
        if entry is not None:
            return entry
        with self._lock:
            entry = self._twins.get(name)
            if entry is not None:
                return entry
            if name in self._unavailable:
                raise TwinUnavailable(name, self._unavailable[name])
            meta = self.db.twins().get(name)
            if meta is None:
                raise TwinNotFound(name)
            try:
                entry = self._twins[name] = self._load(name, meta)
            except StoreError:
                raise  # the store failed, not the twin's data: the next use tries again
            except Exception as exc:  # whatever it is, one twin must not brick the service
                log.exception("twin %r could not be loaded", name)
                reason = self._unavailable[name] = f"{type(exc).__name__}: {str(exc)[:500]}"
                raise TwinUnavailable(name, reason) from exc
            return entry

    def unload(self, name: str) -> None:
        """Forget the loaded twin (its memory may be ahead of the store after a failed
        write); the next use loads it again from the store."""
        with self._lock:
            entry = self._twins.pop(name, None)
        if entry is not None and entry.twin.tuner is not None:
            entry.twin.tuner.stop()

    def unavailable(self) -> dict[str, str]:
        """Twins that could not be loaded, with the reason."""
        with self._lock:
            return dict(self._unavailable)

    def names(self) -> list[str]:
        return sorted(self.db.twins())

    def _state_view(self, entry: Entry, episode: str) -> dict[str, Any]:
        out: dict[str, Any] = {"episode": episode, "t": entry.last_t.get(episode),
                               "values": dict(entry.states.get(episode, {}))}
        if entry.assimilator is not None:
            out["fused"] = {k: {"mean": f.mean, "sd": f.sd, "prior": f.prior, "gain": f.gain,
                                "source": f.source, "reason": f.reason}
                            for k, f in entry.assimilator.fused(episode).items()}
        return out
