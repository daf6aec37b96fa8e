"""A schema of described variables that may change while the twin runs.

Every change (add, remove, re-describe) bumps the version and is kept, timestamped, in
``history``, so any past version can be rebuilt with :meth:`Schema.as_of`.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from lmtwin.errors import InvalidValue, SchemaError, UnknownVariable

Role = Literal["state", "action", "context"]
ROLES: tuple[Role, ...] = ("state", "action", "context")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True)
class Variable:
    """A named, described variable. Bounds are inclusive; None means unbounded."""

    name: str
    role: Role = "state"
    unit: str = ""
    description: str = ""
    lower: float | None = None
    upper: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise SchemaError(
                f"invalid variable name {self.name!r}: use letters, digits and _ (max 64)"
            )
        if self.role not in ROLES:
            raise SchemaError(f"invalid role {self.role!r} for {self.name!r}; use one of {ROLES}")
        for bound in (self.lower, self.upper):
            if bound is not None and not math.isfinite(bound):
                raise SchemaError(f"bounds of {self.name!r} must be finite numbers or None")
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            raise SchemaError(f"lower bound above upper bound for {self.name!r}")

    def describe(self) -> str:
        """One line for a prompt or a display."""
        unit = f" [{self.unit}]" if self.unit else ""
        text = f": {self.description}" if self.description else ""
        return f"{self.name} ({self.role}{unit}){text}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SchemaChange:
    """One versioned, timestamped change. ``variable`` is the variable after the change
    (for ``remove``, the variable as it was)."""

    version: int
    at: float
    kind: Literal["add", "remove", "describe"]
    variable: Variable

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "at": self.at,
            "kind": self.kind,
            "variable": self.variable.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SchemaChange:
        return cls(
            version=int(data["version"]),
            at=float(data["at"]),
            kind=data["kind"],
            variable=Variable(**data["variable"]),
        )


class Schema:
    """The variables of a twin, their versions and their change history.

    Example:
        >>> s = Schema([Variable("v", "state", "cm3", "tumour volume", lower=0)])
        >>> s.validate({"v": 3.0})
        {'v': 3.0}
    """

    def __init__(self, variables: list[Variable] | None = None) -> None:
        self.variables: dict[str, Variable] = {}
        self.history: list[SchemaChange] = []
        for var in variables or []:
            self.add(var)

    @property
    def version(self) -> int:
        return self.history[-1].version if self.history else 0

    def names(self, role: Role | None = None) -> list[str]:
        return [v.name for v in self.variables.values() if role is None or v.role == role]

    @property
    def states(self) -> list[str]:
        return self.names("state")

    @property
    def actions(self) -> list[str]:
        return self.names("action")

    @property
    def contexts(self) -> list[str]:
        return self.names("context")

    def __contains__(self, name: object) -> bool:
        return name in self.variables

    def __getitem__(self, name: str) -> Variable:
        try:
            return self.variables[name]
        except KeyError:
            raise UnknownVariable(name, list(self.variables)) from None

    def _record(
        self, kind: Literal["add", "remove", "describe"], var: Variable, at: float | None
    ) -> SchemaChange:
        change = SchemaChange(self.version + 1, time.time() if at is None else at, kind, var)
        self.history.append(change)
        return change

    def add(self, var: Variable, at: float | None = None) -> SchemaChange:
        """Add a variable; raises SchemaError if the name is taken."""
        if var.name in self.variables:
            raise SchemaError(f"variable {var.name!r} already exists; use describe() to change it")
        self.variables[var.name] = var
        return self._record("add", var, at)

    def remove(self, name: str, at: float | None = None) -> SchemaChange:
        """Remove a variable; its stored history stays readable."""
        var = self[name]
        del self.variables[name]
        return self._record("remove", var, at)

    def describe(self, name: str, at: float | None = None, **fields: Any) -> SchemaChange:
        """Change a variable's unit, description, bounds or role."""
        allowed = {"role", "unit", "description", "lower", "upper"}
        unknown = set(fields) - allowed
        if unknown:
            raise SchemaError(f"cannot change {sorted(unknown)}; changeable: {sorted(allowed)}")
        var = replace(self[name], **fields)
        self.variables[name] = var
        return self._record("describe", var, at)

    def apply(self, change: SchemaChange) -> None:
        """Replay a stored change (used when a twin is reopened)."""
        if change.kind == "add":
            self.variables[change.variable.name] = change.variable
        elif change.kind == "remove":
            self.variables.pop(change.variable.name, None)
        else:
            self.variables[change.variable.name] = change.variable
        self.history.append(change)

    def as_of(self, at: float) -> Schema:
        """The schema as it was at time ``at``."""
        past = Schema()
        for change in self.history:
            if change.at <= at:
                past.apply(change)
        return past

    def check_value(self, name: str, value: object) -> float:
        """Return ``value`` as a float, or raise InvalidValue."""
        if isinstance(value, bool) or (
            not isinstance(value, (int, float)) and not _is_numpy_number(value)
        ):
            raise InvalidValue(name, value, f"expected a number, got {type(value).__name__}")
        number = float(value)  # type: ignore[arg-type]
        if not math.isfinite(number):
            raise InvalidValue(name, value, "not a finite number")
        var = self.variables.get(name)
        if var is not None:
            if var.lower is not None and number < var.lower:
                raise InvalidValue(name, value, f"below the lower bound {var.lower}")
            if var.upper is not None and number > var.upper:
                raise InvalidValue(name, value, f"above the upper bound {var.upper}")
        return number

    def validate(self, values: Mapping[str, object], strict: bool = True) -> dict[str, float]:
        """Check every value; nothing is changed unless all pass.

        Unknown names raise UnknownVariable when ``strict``; otherwise they are returned
        too, and the caller adds them (see ``unknown``).
        """
        if not isinstance(values, Mapping):
            raise SchemaError(
                f"values must be a mapping of name to number, got {type(values).__name__}"
            )
        clean: dict[str, float] = {}
        for name, value in values.items():
            if name not in self.variables:
                if strict:
                    raise UnknownVariable(str(name), list(self.variables))
                Variable(str(name))  # checks the name is valid
            clean[str(name)] = self.check_value(str(name), value)
        return clean

    def unknown(self, values: Mapping[str, object]) -> list[str]:
        return [str(n) for n in values if n not in self.variables]

    def to_list(self) -> list[dict[str, Any]]:
        return [v.to_dict() for v in self.variables.values()]


def _is_numpy_number(value: object) -> bool:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        return False
    return isinstance(value, (np.integer, np.floating))
