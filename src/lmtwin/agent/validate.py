"""Every proposed call is checked against the twin's schema before anything runs.

Names must exist, roles must fit the argument (only action variables are set or varied;
only state variables are forecast, optimised or watched), values must lie inside the
declared bounds, and a value given in another unit is converted with pint when the
units are compatible and refused when they are not. A refusal is a ``CallRefused``
saying which argument and why; nothing is changed by a refused call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from lmtwin.agent import tools as T
from lmtwin.agent.units import UnitMismatch, convert
from lmtwin.errors import CallRefused, SchemaError
from lmtwin.schema import Schema, Variable


@dataclass(frozen=True)
class Call:
    """A validated tool call: the tool and its arguments in the twin's own units."""

    tool: str
    args: T.Args

    def to_dict(self) -> dict[str, Any]:
        return {"tool": self.tool, "args": self.args.model_dump(mode="json")}

    @property
    def kind(self) -> T.Kind:
        return T.TOOLS[self.tool].kind


def validate(tool: str, raw: Any, schema: Schema) -> Call:
    """Check a proposed call; return it in canonical form or raise ``CallRefused``."""
    spec = T.TOOLS.get(tool) if isinstance(tool, str) else None
    if spec is None:
        raise CallRefused(str(tool)[:64], f"no such tool; tools: {', '.join(T.TOOLS)}")
    if raw is not None and not isinstance(raw, dict):
        raise CallRefused(tool, f"arguments must be an object, got {type(raw).__name__}")
    try:
        args = spec.parse(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or None
        raise CallRefused(tool, first["msg"], where) from None
    check = _CHECKS.get(tool)
    return Call(tool, check(tool, args, schema) if check else args)


def _known(tool: str, schema: Schema, name: str, argument: str, roles: tuple[str, ...] = (),
           ) -> Variable:
    var = schema.variables.get(name)
    if var is None:
        known = ", ".join(schema.variables) or "none"
        raise CallRefused(tool, f"unknown variable {name!r}; the twin has: {known}", argument)
    if roles and var.role not in roles:
        raise CallRefused(
            tool, f"{name!r} is a {var.role} variable; this needs a {' or '.join(roles)} "
            "variable", argument)
    return var


def _in_bounds(tool: str, var: Variable, value: float, argument: str) -> float:
    if not math.isfinite(value):
        raise CallRefused(tool, f"{value!r} is not a finite number", argument)
    if var.lower is not None and value < var.lower:
        raise CallRefused(tool, f"{value:g} is below the lower bound {var.lower:g} of "
                          f"{var.name!r}{_unit(var)}", argument)
    if var.upper is not None and value > var.upper:
        raise CallRefused(tool, f"{value:g} is above the upper bound {var.upper:g} of "
                          f"{var.name!r}{_unit(var)}", argument)
    return value


def _unit(var: Variable) -> str:
    return f" ({var.unit})" if var.unit else ""


def _actions(tool: str, schema: Schema, actions: dict[str, float]) -> None:
    for name, value in actions.items():
        var = _known(tool, schema, name, "actions", ("action",))
        _in_bounds(tool, var, value, f"actions.{name}")


def _states(tool: str, schema: Schema, names: list[str], argument: str) -> None:
    for name in names:
        _known(tool, schema, name, argument, ("state",))


def _get_state(tool: str, args: Any, schema: Schema) -> T.Args:
    for name in args.variables:
        _known(tool, schema, name, "variables")
    return args


def _get_history(tool: str, args: Any, schema: Schema) -> T.Args:
    if args.variable is not None:
        _known(tool, schema, args.variable, "variable")
    return args


def _predict(tool: str, args: Any, schema: Schema) -> T.Args:
    _states(tool, schema, args.variables, "variables")
    _actions(tool, schema, args.actions)
    return args


def _optimise(tool: str, args: Any, schema: Schema) -> T.Args:
    _known(tool, schema, args.variable, "variable", ("state",))
    if not schema.actions:
        raise CallRefused(tool, "the twin has no action variables to optimise")
    return args


def _time_to(tool: str, args: Any, schema: Schema) -> T.Args:
    var = _known(tool, schema, args.variable, "variable", ("state",))
    _in_bounds(tool, var, args.threshold, "threshold")
    return args


def _add_note(tool: str, args: Any, schema: Schema) -> T.Args:
    if not args.text.strip():
        raise CallRefused(tool, "the note is blank", "text")
    return replace_args(args, text=args.text.strip())


def _add_variable(tool: str, args: Any, schema: Schema) -> T.Args:
    if args.name in schema:
        raise CallRefused(tool, f"the twin already has a variable {args.name!r}", "name")
    try:
        Variable(args.name, args.role, args.unit, args.description, args.lower, args.upper)
    except SchemaError as exc:
        raise CallRefused(tool, str(exc), "name") from None
    return args


def _remove_variable(tool: str, args: Any, schema: Schema) -> T.Args:
    _known(tool, schema, args.name, "name")
    return args


def _update_variable(tool: str, args: Any, schema: Schema) -> T.Args:
    var = _known(tool, schema, args.name, "name")
    fields = args.model_dump(exclude={"name"}, exclude_none=True)
    if not fields:
        raise CallRefused(tool, "nothing to change: give a unit, description or bounds")
    try:
        replace(var, **fields)
    except SchemaError as exc:
        raise CallRefused(tool, str(exc)) from None
    return args


def _actuate(tool: str, args: Any, schema: Schema) -> T.Args:
    var = _known(tool, schema, args.variable, "variable", ("action",))
    value = args.value
    if args.unit is not None and args.unit != var.unit:
        try:
            value = convert(value, args.unit, var.unit)
        except UnitMismatch as exc:
            raise CallRefused(tool, str(exc), "unit") from None
    _in_bounds(tool, var, value, "value")
    return replace_args(args, value=value, unit=None)


def replace_args(args: T.Args, **fields: Any) -> T.Args:
    """A copy of validated arguments with some fields changed."""
    return args.model_copy(update=fields)


_CHECKS = {
    "get_state": _get_state,
    "get_history": _get_history,
    "predict": _predict,
    "what_if": _predict,
    "optimise": _optimise,
    "time_to": _time_to,
    "add_note": _add_note,
    "add_variable": _add_variable,
    "remove_variable": _remove_variable,
    "update_variable": _update_variable,
    "actuate": _actuate,
}
