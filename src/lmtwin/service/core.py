"""The service layer: one shared store, the twins living on it, and the operations the
HTTP routes and the MQTT ingest both call. Routes stay thin; this stays thin over Twin."""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lmtwin.assimilation import Assimilator, Noise
from lmtwin.errors import InvalidValue, SchemaError
from lmtwin.llm.base import Completion, LLMBackend
from lmtwin.predictors import LLMPredictor, LocalRidge, Persistence, Predictor
from lmtwin.schema import SchemaChange, Variable
from lmtwin.service.db import ServiceDB
from lmtwin.service.errors import Conflict, PayloadTooLarge, TwinNotFound, VariableNotFound
from lmtwin.service.events import EventHub
from lmtwin.service.settings import Settings
from lmtwin.service.stores import KeyedSQLiteStore
from lmtwin.twin import Twin
from lmtwin.types import Observation

if TYPE_CHECKING:
    from lmtwin.service.postgres import PostgresStore


def open_store(url: str) -> KeyedSQLiteStore | PostgresStore:
    """The twins' store for a settings ``store`` value (path, 'memory' or postgresql URL)."""
    if url.startswith(("postgresql://", "postgres://")):
        from lmtwin.service.postgres import PostgresStore

        return PostgresStore(url)
    return KeyedSQLiteStore(":memory:" if url == "memory" else url)


class LockedBackend:
    """Serialises calls to a backend shared by every twin (llama.cpp is not re-entrant)."""

    def __init__(self, backend: LLMBackend) -> None:
        self.inner = backend
        self.name = backend.name
        self.supports_grammar = backend.supports_grammar
        self._lock = threading.Lock()

    def complete(self, prompt: str, *, max_tokens: int = 32, temperature: float = 0.0,
                 stop: list[str] | None = None, grammar: str | None = None,
                 seed: int | None = None) -> Completion:
        with self._lock:
            return self.inner.complete(prompt, max_tokens=max_tokens, temperature=temperature,
                                       stop=stop, grammar=grammar, seed=seed)

    def close(self) -> None:
        """Closed by the service, never by one twin."""

    def close_inner(self) -> None:
        """Close the model once no call is inside it (a request's thread may still be)."""
        with self._lock:
            self.inner.close()


def make_backend(settings: Settings) -> LLMBackend | None:
    if settings.llm == "none":
        return None
    if settings.llm_url:
        from lmtwin.llm import OpenAICompatBackend

        return OpenAICompatBackend(settings.llm_url, model=settings.llm)
    from lmtwin.llm import LlamaCppBackend

    return LlamaCppBackend(settings.llm, n_threads=settings.llm_threads)


@dataclass
class _Entry:
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


class TwinService:
    """Twins on one store, with idempotent ingest, cached latest state and live events.

    Args:
        settings: the service's settings.
        backend: the language model added to every twin's predictors; None builds one from
            ``settings.llm`` ('none' means numeric predictors only).
    """

    def __init__(self, settings: Settings, backend: LLMBackend | None = None) -> None:
        self.settings = settings
        self.store = open_store(settings.store)
        self.db = ServiceDB(settings.store, self.store.connection
                            if isinstance(self.store, KeyedSQLiteStore) else None)
        self.events = EventHub()
        self.backend: LLMBackend | None = None
        self._owns_backend = backend is None
        raw = backend if backend is not None else make_backend(settings)
        if raw is not None:
            self.backend = LockedBackend(raw)
        self._twins: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self.db.forget_before(time.time() - settings.idempotency_ttl_s)
        self.counters = {"observations": 0, "batches": 0, "replayed": 0, "rejected": 0}

    # --- twins ---------------------------------------------------------------------
    def _predictors(self) -> list[Predictor]:
        predictors: list[Predictor] = [Persistence(), LocalRidge()]
        if self.backend is not None:
            predictors.append(LLMPredictor(self.backend))
        return predictors

    def _load(self, name: str, meta: dict[str, Any]) -> _Entry:
        config = meta["config"]
        twin = Twin(name, store=self.store, predictors=self._predictors(),
                    strict=config.get("strict", True), level=config.get("level", 0.9))
        entry = _Entry(twin, config, meta["created_at"])
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

    def _assimilator(self, entry: _Entry) -> Assimilator:
        if entry.assimilator is None:
            entry.assimilator = Assimilator(entry.twin, entry.noise(),
                                            using=self.settings.assimilation_predictors)
        return entry.assimilator

    def entry(self, name: str) -> _Entry:
        with self._lock:
            entry = self._twins.get(name)
            if entry is not None:
                return entry
            meta = self.db.twins().get(name)
            if meta is None:
                raise TwinNotFound(name)
            entry = self._twins[name] = self._load(name, meta)
            return entry

    def names(self) -> list[str]:
        return sorted(self.db.twins())

    def create(self, name: str, variables: Sequence[Variable], strict: bool = True,
               level: float = 0.9, description: str = "",
               knowledge: Sequence[str] = (),
               noise: Mapping[str, Noise] | None = None) -> dict[str, Any]:
        """Register a twin with its first variables, notes and declared sensor noise."""
        Variable(name)  # twin names follow variable names' rules (letters, digits, _)
        if not 0 < level < 1:
            raise SchemaError("level must lie between 0 and 1")
        names = [v.name for v in variables]
        if len(set(names)) != len(names):
            raise SchemaError("variable names must be unique")
        config = {"strict": strict, "level": level, "description": description, "noise": {}}
        with self._lock:
            if not self.db.add_twin(name, config):
                raise Conflict(f"the twin name {name!r} is taken (archived names stay taken)")
        entry = self.entry(name)
        with entry.lock:
            for var in variables:
                entry.twin.add_variable(var)
            for text in knowledge:
                entry.twin.add_knowledge(text)
            for var_name, var_noise in (noise or {}).items():
                self._variable(entry, var_name)
                self._set_noise(entry, var_name, var_noise)
        return self.describe(name)

    def describe(self, name: str) -> dict[str, Any]:
        entry = self.entry(name)
        twin = entry.twin
        return {
            "name": name,
            "created_at": entry.created_at,
            "description": entry.config.get("description", ""),
            "strict": twin.strict,
            "level": twin.level,
            "schema_version": twin.schema.version,
            "variables": twin.schema.to_list(),
            "noise": entry.config["noise"],
            "predictors": [p.name for p in twin.predictors],
            "encoder": type(twin.retriever.encoder).__name__,
            "tunings": [vars(r) for r in twin.tuner.runs_] if twin.tuner else [],
            "tuner_error": twin.tuner.error_ if twin.tuner else None,
            "episodes": sorted(entry.states),
            "n_notes": len(twin.notes),
            "subscribers": self.events.subscribers(name),
        }

    def update(self, name: str, strict: bool | None = None, level: float | None = None,
               description: str | None = None) -> dict[str, Any]:
        entry = self.entry(name)
        with entry.lock:
            if strict is not None:
                entry.twin.strict = entry.config["strict"] = strict
            if level is not None:
                if not 0 < level < 1:
                    raise SchemaError("level must lie between 0 and 1")
                entry.twin.level = entry.config["level"] = level
            if description is not None:
                entry.config["description"] = description
            self.db.set_config(name, entry.config)
        return self.describe(name)

    def archive(self, name: str) -> None:
        """Hide a twin from the service; its history stays in the append-only store."""
        self.entry(name)
        with self._lock:
            self.db.archive_twin(name)
            self._twins.pop(name, None)
        self.events.publish(name, "archived", {"twin": name})

    # --- schema and knowledge ------------------------------------------------------
    def _variable(self, entry: _Entry, variable: str) -> None:
        if variable not in entry.twin.schema:
            raise VariableNotFound(entry.twin.name, variable)

    def add_variable(self, name: str, variable: Variable, noise: Noise | None = None
                     ) -> dict[str, Any]:
        entry = self.entry(name)
        with entry.lock:
            if variable.name in entry.twin.schema:
                raise Conflict(f"twin {name!r} already has a variable {variable.name!r}")
            change = entry.twin.add_variable(variable)
            if noise is not None:
                self._set_noise(entry, variable.name, noise)
        self.events.publish(name, "schema", change_dict(change))
        return change_dict(change)

    def describe_variable(self, name: str, variable: str, fields: dict[str, Any],
                          noise: Noise | None = None, clear_noise: bool = False
                          ) -> dict[str, Any]:
        entry = self.entry(name)
        with entry.lock:
            self._variable(entry, variable)
            change = entry.twin.describe_variable(variable, **fields) if fields else None
            if noise is not None:
                self._set_noise(entry, variable, noise)
            elif clear_noise:
                entry.config["noise"].pop(variable, None)
                self.db.set_config(name, entry.config)
                if entry.assimilator is not None:
                    entry.assimilator.set_noise(variable, None)
            entry.views.clear()
        out = change_dict(change) if change else {"variable": entry.twin.schema[variable].to_dict()}
        out["noise"] = entry.config["noise"].get(variable)
        self.events.publish(name, "schema", out)
        return out

    def _set_noise(self, entry: _Entry, variable: str, noise: Noise) -> None:
        entry.config["noise"][variable] = {"sensor": noise.sensor, "process": noise.process}
        self.db.set_config(entry.twin.name, entry.config)
        self._assimilator(entry).set_noise(variable, noise)

    def remove_variable(self, name: str, variable: str) -> dict[str, Any]:
        entry = self.entry(name)
        with entry.lock:
            self._variable(entry, variable)
            change = entry.twin.remove_variable(variable)
            if entry.config["noise"].pop(variable, None) is not None:
                self.db.set_config(name, entry.config)
            if entry.assimilator is not None:
                entry.assimilator.forget(variable)
            entry.views.clear()
        self.events.publish(name, "schema", change_dict(change))
        return change_dict(change)

    def schema(self, name: str, as_of: float | None = None) -> dict[str, Any]:
        twin = self.entry(name).twin
        schema = twin.schema if as_of is None else twin.schema.as_of(as_of)
        return {"version": schema.version, "variables": schema.to_list(),
                "history": [c.to_dict() for c in schema.history]}

    def add_knowledge(self, name: str, text: str) -> dict[str, Any]:
        entry = self.entry(name)
        note = entry.twin.add_knowledge(text)
        out = {"at": note.at, "text": note.text}
        self.events.publish(name, "knowledge", out)
        return out

    def knowledge(self, name: str, as_of: float | None = None) -> list[dict[str, Any]]:
        twin = self.entry(name).twin
        return [{"at": n.at, "text": n.text} for n in twin.store.notes(name, as_of)]

    # --- mirror --------------------------------------------------------------------
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
                previous = self.db.replay(name, key)
                if previous is not None:
                    if previous.pop("request", digest) != digest:
                        raise Conflict(f"idempotency key {key!r} was used for another request")
                    self.counters["replayed"] += 1
                    return {**previous, "replayed": True}
            stored = self._prepare(entry, rows)
            last = {o.episode: o.t for o in stored}
            result = {"stored": len(stored), "last_t": last, "replayed": False}
            # the idempotency record commits in the same transaction as the rows
            with self.store.keyed(name, key, json.dumps({**result, "request": digest})):
                if len(stored) == 1:
                    obs = stored[0]
                    twin.observe(obs.values, episode=obs.episode, t=obs.t)
                else:
                    twin.observe_many(stored)
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

    def _prepare(self, entry: _Entry, rows: Sequence[Mapping[str, Any]]) -> list[Observation]:
        """Rows as observations with their times (default: the episode's last time + 1,
        as Twin.observe does); times must rise within each episode. Unknown names become
        state variables on a lenient twin."""
        twin = entry.twin
        if not twin.strict:
            names = dict.fromkeys(n for row in rows for n in row["values"]
                                  if n not in twin.schema)
            for var in [Variable(n, "state", description="added from data") for n in names]:
                twin.add_variable(var)
        last = dict(entry.last_t)
        out = []
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
            values = twin.schema.validate(row["values"], strict=True)
            out.append(Observation(episode, t, values))
        return out

    def _state_view(self, entry: _Entry, episode: str) -> dict[str, Any]:
        out: dict[str, Any] = {"episode": episode, "t": entry.last_t.get(episode),
                               "values": dict(entry.states.get(episode, {}))}
        if entry.assimilator is not None:
            out["fused"] = {k: {"mean": f.mean, "sd": f.sd, "prior": f.prior, "gain": f.gain,
                                "source": f.source}
                            for k, f in entry.assimilator.fused(episode).items()}
        return out

    def cached_state(self, name: str, episode: str) -> dict[str, Any] | None:
        """The latest state from memory, or None when it needs loading (never blocks)."""
        entry = self._twins.get(name)
        return None if entry is None else entry.views.get(episode)

    def state(self, name: str, episode: str = "default", as_of: float | None = None
              ) -> dict[str, Any]:
        entry = self.entry(name)
        if as_of is not None:
            return {"episode": episode, "as_of": as_of,
                    "values": entry.twin.state(episode, as_of=as_of)}
        view = entry.views.get(episode)
        if view is not None:
            return view
        with entry.lock:
            view = entry.views[episode] = self._state_view(entry, episode)
            return view

    def history(self, name: str, variable: str | None = None, episode: str | None = None,
                t_from: float | None = None, t_to: float | None = None,
                as_of: float | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        entry = self.entry(name)
        rows = entry.twin.history(variable, episode, t_from, t_to, as_of)
        return [{"episode": o.episode, "t": o.t, "values": o.values} for o in rows[-limit:]]

    def performance(self, name: str, last: int = 200) -> dict[str, Any]:
        """How the twin's scored predictions went: error per predictor and combined,
        interval coverage, and the combination weights in force."""
        twin = self.entry(name).twin
        scores = twin.scores_[-last:]  # a copy; the list grows as observations arrive
        names = [p.name for p in twin.predictors]
        sq: dict[str, list[float]] = {n: [] for n in [*names, "combined"]}
        covered = []
        for sc in scores:
            sq["combined"].append((sc.combined - sc.actual) ** 2)
            for n, v in sc.by_predictor.items():
                sq.setdefault(n, []).append((v - sc.actual) ** 2)
            if sc.lower is not None and sc.upper is not None:
                covered.append(sc.lower <= sc.actual <= sc.upper)
        return jsonable({
            "scored": len(scores),
            "mse": {n: float(np.mean(v)) if v else None for n, v in sq.items()},
            "coverage": float(np.mean(covered)) if covered else None,
            "n_intervals": len(covered),
            "level": twin.level,
            "weights": twin.hedge.weights(names),
        })

    # --- intervene -----------------------------------------------------------------
    def _current(self, entry: _Entry, episode: str) -> dict[str, float]:
        schema = entry.twin.schema
        return {k: v for k, v in entry.states.get(episode, {}).items()
                if k in schema and schema[k].role != "action"}

    def predict(self, name: str, state: Mapping[str, Any] | None,
                action: Mapping[str, Any] | None, episode: str | None = None,
                score: bool = True) -> dict[str, Any]:
        """Predict the next state; ``state`` None means the episode's latest state. With
        ``score`` and an episode, the twin scores it against the next observation."""
        entry = self.entry(name)
        if state is None:
            state = self._current(entry, episode or "default")
        prediction = entry.twin.predict(state, action, episode if score else None)
        return jsonable(prediction.to_dict())

    def simulate(self, name: str, state: Mapping[str, Any] | None,
                 plan: Sequence[Mapping[str, Any]], n_paths: int = 1,
                 horizon: int | None = None, episode: str = "default") -> dict[str, Any]:
        steps = (horizon or len(plan)) * n_paths
        if steps > self.settings.max_simulation_steps:
            raise PayloadTooLarge(f"n_paths x horizon is {steps}; the limit is "
                                  f"{self.settings.max_simulation_steps}")
        entry = self.entry(name)
        if state is None:
            state = self._current(entry, episode)
        sim = entry.twin.simulate(state, plan, n_paths=n_paths, horizon=horizon)
        q = sim.quantiles((0.05, 0.5, 0.95))
        mean = sim.paths.mean(axis=0)
        return jsonable({
            "variables": sim.variables,
            "n_paths": n_paths,
            "horizon": sim.paths.shape[1] - 1,
            "mean": {v: mean[:, j] for j, v in enumerate(sim.variables)},
            "lower": {v: q[0, :, j] for j, v in enumerate(sim.variables)},
            "median": {v: q[1, :, j] for j, v in enumerate(sim.variables)},
            "upper": {v: q[2, :, j] for j, v in enumerate(sim.variables)},
            "level": 0.9,
        })

    def close(self) -> None:
        with self._lock:
            for entry in self._twins.values():
                if entry.twin.tuner is not None:
                    entry.twin.tuner.stop()
            self._twins.clear()
        self.store.close()
        self.db.close()
        if self.backend is not None and self._owns_backend:
            assert isinstance(self.backend, LockedBackend)
            self.backend.close_inner()
