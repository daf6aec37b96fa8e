"""Twins, their schema and knowledge: the registry operations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lmtwin.assimilation import Noise
from lmtwin.errors import SchemaError
from lmtwin.predictors import Persistence
from lmtwin.schema import Variable
from lmtwin.service.errors import Conflict, TwinNotFound, VariableNotFound
from lmtwin.service.ops.base import Entry, ServiceBase, change_dict
from lmtwin.store.memory import MemoryStore
from lmtwin.twin import Twin


class Registry(ServiceBase):
    """Create, describe, change and archive twins; their variables and notes."""

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
        self._rehearse(name, variables, strict, knowledge, noise or {})
        config = {"strict": strict, "level": level, "description": description, "noise": {}}
        # one transaction: the registration, variables, notes and noise, or nothing. The
        # twin is built inside it but published only after the commit (no service lock is
        # taken inside: loads hold that lock while they read the store)
        entry: Entry | None = None
        try:
            with self.store.transaction():
                if not self.db.add_twin(name, config):
                    raise Conflict(f"the twin name {name!r} is taken (archived names stay "
                                   f"taken)")
                entry = self._load(name, self.db.twins()[name])
                for var in variables:
                    entry.twin.add_variable(var)
                for text in knowledge:
                    entry.twin.add_knowledge(text)
                for var_name, var_noise in (noise or {}).items():
                    self._variable(entry, var_name)
                    self._set_noise(entry, var_name, var_noise)
        except Exception:
            if entry is not None and entry.twin.tuner is not None:
                entry.twin.tuner.stop()
            raise
        assert entry is not None
        with self._lock:
            self._twins.setdefault(name, entry)
        return self.describe(name)

    @staticmethod
    def _rehearse(name: str, variables: Sequence[Variable], strict: bool,
                  knowledge: Sequence[str], noise: Mapping[str, Noise]) -> None:
        """Run the creation on a throw-away twin in memory, so that any input the real one
        would refuse is refused before anything is stored (creation is all or nothing)."""
        trial = Twin(name, store=MemoryStore(), predictors=[Persistence()], strict=strict)
        for var in variables:
            trial.add_variable(var)
        for text in knowledge:
            trial.add_knowledge(text)
        for var_name in noise:
            if var_name not in trial.schema:
                raise VariableNotFound(name, var_name)

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
            "assimilation": None if entry.assimilator is None else {
                "fallbacks": dict(entry.assimilator.fallbacks_),
                "last_fallback": entry.assimilator.last_fallback_},
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
        """Hide a twin from the service; its history stays in the append-only store.
        Works on a twin that cannot be loaded, too (it is never loaded here)."""
        with self._lock:
            if name not in self.db.twins():
                raise TwinNotFound(name)
            self.db.archive_twin(name)
            entry = self._twins.pop(name, None)
            self._unavailable.pop(name, None)
        if entry is not None and entry.twin.tuner is not None:
            entry.twin.tuner.stop()
        self.events.publish(name, "archived", {"twin": name})

    # --- schema and knowledge ------------------------------------------------------
    def _variable(self, entry: Entry, variable: str) -> None:
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

    def _set_noise(self, entry: Entry, variable: str, noise: Noise) -> None:
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
        # under the twin's service lock, as every write: an ingest holds it around its
        # store transaction, so twin lock -> store lock never meets store -> twin
        with entry.lock:
            note = entry.twin.add_knowledge(text)
        out = {"at": note.at, "text": note.text}
        self.events.publish(name, "knowledge", out)
        return out

    def knowledge(self, name: str, as_of: float | None = None) -> list[dict[str, Any]]:
        twin = self.entry(name).twin
        return [{"at": n.at, "text": n.text} for n in twin.store.notes(name, as_of)]

