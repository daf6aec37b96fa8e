"""Observations in: validated whole, committed with their idempotency record."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from lmtwin.errors import InvalidValue, SchemaError
from lmtwin.schema import Variable
from lmtwin.service.errors import Conflict, PayloadTooLarge
from lmtwin.service.ops.base import Entry, ServiceBase
from lmtwin.types import Observation


class Ingest(ServiceBase):
    """Idempotent, all-or-nothing ingest (HTTP and MQTT share it)."""

    def ingest(self, name: str, rows: Sequence[Mapping[str, Any]],
               key: str | None = None) -> dict[str, Any]:
        """Store observations (each ``{"episode", "t", "values"}``) all or none.

        With ``key``, a repeated delivery returns the first answer and stores nothing.
        The answer is given only once the rows are committed.
        """
        if len(rows) > self.settings.max_batch:
            raise PayloadTooLarge(f"a batch holds at most {self.settings.max_batch} observations")
        if not rows:
            raise SchemaError("a batch needs at least one observation")
        entry = self.entry(name)
        twin = entry.twin
        with entry.lock:
            digest = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
            if key is not None:
                now = time.time()
                self._purge_keys(now)
                previous = self.db.replay(name, key, now - self.settings.idempotency_ttl_s)
                if previous is not None:
                    if previous.pop("request", digest) != digest:
                        raise Conflict(f"idempotency key {key!r} was used for another request")
                    self.counters["replayed"] += 1
                    return {**previous, "replayed": True}
            stored = self._prepare(entry, rows)
            last = {o.episode: o.t for o in stored}
            result = {"stored": len(stored), "last_t": last, "replayed": False}
            # the idempotency record commits in the same transaction as the rows, so a
            # crash can never separate them (a retry is either replayed or stored, once)
            try:
                with self.store.transaction():
                    if len(stored) == 1:
                        obs = stored[0]
                        twin.observe(obs.values, episode=obs.episode, t=obs.t)
                    else:
                        twin.observe_many(stored)
                    if key is not None:
                        self.db.remember(name, key, json.dumps({**result, "request": digest}))
            except SchemaError:
                raise  # refused by the twin's own checks, before it changed anything
            except Exception:
                # nothing was stored, but the twin may have learnt the rows in memory:
                # it reloads from the store on next use
                self.unload(name)
                raise
            for obs in stored:
                entry.states.setdefault(obs.episode, {}).update(obs.values)
                entry.last_t[obs.episode] = obs.t
                if entry.assimilator is not None:
                    entry.assimilator.update(obs)
            self.counters["observations"] += len(stored)
            self.counters["batches"] += 1
            events = [{"episode": o.episode, "t": o.t, "values": o.values} for o in stored[-50:]]
            states = {ep: self._state_view(entry, ep) for ep in last}
            entry.views.update(states)
        self.events.publish(name, "observations", {"observations": events, "n": len(stored)})
        self.events.publish(name, "state", {"states": states})
        return result

    def _purge_keys(self, now: float) -> None:
        """Forget idempotency keys older than their time to live, at most every tenth of
        it (and every 10 minutes), so the table stays bounded while the service runs."""
        if now - self._keys_purged_at >= min(self.settings.idempotency_ttl_s / 10, 600.0):
            self._keys_purged_at = now
            self.db.forget_before(now - self.settings.idempotency_ttl_s)

    def _prepare(self, entry: Entry, rows: Sequence[Mapping[str, Any]]) -> list[Observation]:
        """Rows as observations with their times (default: the episode's last time + 1,
        as Twin.observe does); times must rise within each episode. Unknown names become
        state variables on a lenient twin, once the whole batch is valid (a refused batch
        changes no schema)."""
        twin = entry.twin
        new = dict.fromkeys(n for row in rows for n in twin.schema.unknown(row["values"]))
        if new and not twin.strict:
            out = self._observations(entry, rows, lenient=True)
            for var in [Variable(n, "state", description="added from data") for n in new]:
                twin.add_variable(var)
            return out
        return self._observations(entry, rows, lenient=False)

    def _observations(self, entry: Entry, rows: Sequence[Mapping[str, Any]],
                      lenient: bool) -> list[Observation]:
        """Validated observations; ``lenient``: unknown names are about to be added."""
        twin = entry.twin
        last = dict(entry.last_t)
        out: list[Observation] = []
        for row in rows:
            episode = str(row.get("episode", "default"))
            t = row.get("t")
            if t is None:
                t = last[episode] + 1.0 if episode in last else 0.0
            t = twin.schema.check_value("t", t)
            if episode in last and t <= last[episode]:
                raise InvalidValue("t", t, f"not after episode {episode!r}'s last time "
                                           f"{last[episode]}")
            last[episode] = t
            values = twin.schema.validate(row["values"], strict=not lenient)
            if not values:  # as Twin.observe: an observation carries at least one value
                raise SchemaError(f"observation {len(out)} of the batch has no values")
            obs = Observation(episode, t, values)
            if entry.assimilator is not None:  # values the Kalman filter cannot take
                entry.assimilator.check(obs)
            out.append(obs)
        return out

