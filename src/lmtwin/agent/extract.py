"""Fill a chosen tool's arguments from the request's own words, against the twin's schema.

Variables come from :mod:`lmtwin.agent.mentions`; numbers, units and durations from
:mod:`lmtwin.agent.text`. A value in another unit is converted to the variable's unit;
"fully"/"maximum" mean the upper bound, "shut"/"stop"/"off" the lower bound. Conditions
("if we stop chemo", "with the heater at 4 kW") give the actions of a forecast or a
scenario; the rest of the request names what to report. When something the tool needs
is missing, this raises ``CallRefused``; when it is present but wrong (an unknown name, a
state variable to set), the call is built as asked and validation refuses it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import replace
from typing import Any

from lmtwin.agent.mentions import STOP, Mention, find
from lmtwin.agent.text import (
    NOT_UNITS,
    Quantity,
    duration_steps,
    in_unit,
    normalise,
    quantities,
)
from lmtwin.agent.units import UnitMismatch
from lmtwin.errors import CallRefused
from lmtwin.schema import Schema, Variable

_UPPER = re.compile(r"\b(fully|full|all the way|maximum|max|overflows?|top|100 ?%|full power|"
                    r"flat out|wide open)\b")
_LOWER = re.compile(r"\b(shut|close|closed|stop|stopped|stopping|off|halt|cut|without|"
                    r"empty|dry|no more|withdraw|zero)\b")
_HALF = re.compile(r"\b(half|halfway|half-way)\b")
_QUARTER = re.compile(r"\b(quarter|three quarters)\b")
_CONDITION = re.compile(r"\b(if|with|suppose|supposing|assuming|when we|while|under)\b")
_MIN_STRONG = re.compile(r"\b(minimi[sz]|reduc|shrink|decreas|lower|cut|cool)\w*")
_MAX_STRONG = re.compile(r"\b(maximi[sz]|increas|rais|grow|boost)\w*")
_MIN_WEAK = re.compile(r"\b(lowest|smallest|least|low|min|minimum|little)\b")
_MAX_WEAK = re.compile(r"\b(highest|largest|most|high|max|maximum|biggest)\b")
_LAST = re.compile(r"\b(?:last|past|previous|recent|latest)\s+(\d+)\b|\b(\d+)\s+(?:latest|"
                   r"most recent|last|recent)\b")
_NOTE_LEAD = re.compile(
    r"^\s*(?:please\s+)?(?:remember|note down|note|log|record|keep in mind|make a note(?: of)?|"
    r"write down|jot down|add a note|add the note|store the fact)(?:\s+that)?\s*[:,-]?\s*")


class Parsed:
    """The request once read: normalised text, quantities and variable mentions."""

    def __init__(self, request: str, schema: Schema, time_unit: str) -> None:
        self.raw = request.strip()
        self.text = normalise(self.raw)
        self.schema = schema
        self.time_unit = time_unit
        units = {v.unit for v in schema.variables.values() if v.unit}
        self.quantities = [_cased(q, self.raw) for q in quantities(self.text, units)]
        self.mentions = find(self.text, schema)

    def durations(self) -> list[Quantity]:
        return [q for q in self.quantities if q.is_duration]

    def values(self, start: int = 0, end: int | None = None) -> list[Quantity]:
        stop = len(self.text) if end is None else end
        return [q for q in self.quantities if not q.is_duration and start <= q.start < stop]

    def horizon(self, tool: str, default: int) -> int:
        durations = self.durations()
        if not durations:
            return default
        try:
            return duration_steps(durations[-1], self.time_unit)
        except UnitMismatch as exc:
            raise CallRefused(tool, str(exc), "horizon") from None

    def condition(self) -> tuple[int, int] | None:
        """The span of a condition clause ('if ...', 'with ...') up to a comma or the end."""
        m = _CONDITION.search(self.text)
        if not m:
            return None
        comma = self.text.find(",", m.end())
        return m.start(), len(self.text) if comma == -1 else comma


def _cased(q: Quantity, raw: str) -> Quantity:
    """The quantity with its unit spelt as in the request ('kW', not 'kw': pint cares)."""
    if not q.unit or q.is_duration or q.unit in {"%", "degrees", "°C", "°F"}:
        return q
    m = re.search(r"(?<![A-Za-z])" + re.escape(q.unit) + r"(?![A-Za-z])", raw, re.IGNORECASE)
    return replace(q, unit=m.group(0)) if m else q


def parse(request: str, schema: Schema, time_unit: str = "step") -> Parsed:
    """``Parsed(request, ...)``, remembered: a request is read by the router, the cues and
    the parser in turn."""
    return _parse(request, time_unit, tuple(schema.variables.values()), schema)


@functools.lru_cache(maxsize=512)
def _parse(request: str, time_unit: str, variables: tuple[Variable, ...],
           schema: Schema) -> Parsed:
    return Parsed(request, schema, time_unit)


def extract(tool: str, request: str, schema: Schema, time_unit: str = "step") -> dict[str, Any]:
    """Raw arguments for ``tool`` read from ``request`` (validated afterwards)."""
    p = parse(request, schema, time_unit)
    return _EXTRACT[tool](tool, p) if tool in _EXTRACT else {}


def _pick(p: Parsed, roles: tuple[str, ...]) -> Mention | None:
    """The best mention among variables of ``roles``; failing that, of any role."""
    mine = find(p.text, p.schema, roles=roles)
    return mine[0] if mine else p.mentions[0] if p.mentions else None


def _value_of(tool: str, p: Parsed, var: Variable, qs: list[Quantity], span: str,
              argument: str) -> float:
    if qs:
        try:
            return in_unit(qs[0], var.unit)
        except UnitMismatch as exc:
            raise CallRefused(tool, str(exc), argument) from None
    if var.lower is not None and var.upper is not None:
        quarter = _QUARTER.search(span)
        if quarter:
            share = 0.75 if quarter.group(1).startswith("three") else 0.25
            return var.lower + share * (var.upper - var.lower)
        if _HALF.search(span):
            return (var.lower + var.upper) / 2
    if _UPPER.search(span) and var.upper is not None:
        return var.upper
    if _LOWER.search(span):
        return var.lower if var.lower is not None else 0.0
    raise CallRefused(tool, f"the request gives no value for {var.name!r}", argument)


def _guess_name(p: Parsed) -> str | None:
    """The noun a request names when it names none of the twin's variables: 'the
    skylight to 30%', '5 mg of insulin'."""
    m = re.search(r"\b(?:the|a|an|my|our)\s+([a-z][a-z0-9_]*)\s+(?:to|at|on|runs?|is|"
                  r"setting|level|position)\b", p.text)
    if m and m.group(1) not in STOP:
        return m.group(1)
    m = re.search(r"\d\s*[a-z/%°]*\s+of\s+([a-z][a-z0-9_]*)", p.text)
    if m and m.group(1) not in STOP:
        return m.group(1)
    return None


def _unnamed(tool: str, p: Parsed, argument: str) -> str:
    guess = _guess_name(p)
    if guess is None:
        raise CallRefused(tool, "the request names none of the twin's variables "
                          f"({', '.join(p.schema.variables) or 'none'})", argument)
    return guess


def _get_state(tool: str, p: Parsed) -> dict[str, Any]:
    return {"variables": [m.variable.name for m in _top(p.mentions)]}


def _top(mentions: list[Mention]) -> list[Mention]:
    """Mentions close to the best one's score, in the order they appear."""
    if not mentions:
        return []
    best = mentions[0].score
    return sorted((m for m in mentions if m.score >= 0.6 * best), key=lambda m: m.start)


def _last(p: Parsed) -> dict[str, Any]:
    m = _LAST.search(p.text)
    return {"last": int(m.group(1) or m.group(2))} if m else {}


def _get_history(tool: str, p: Parsed) -> dict[str, Any]:
    best = p.mentions[0].variable.name if p.mentions else None
    return {"variable": best, **_last(p)}


def _list(tool: str, p: Parsed) -> dict[str, Any]:
    return _last(p)


def _actions_and_targets(tool: str, p: Parsed) -> tuple[dict[str, float], list[str]]:
    cond = p.condition()
    lo, hi = cond if cond else (0, len(p.text))
    # a forecast takes actions only from a condition; a scenario from anywhere
    in_cond = find(p.text, p.schema, lo, hi) if cond or tool == "what_if" else []
    acts = [m for m in in_cond if m.variable.role == "action"]
    if not acts and tool == "what_if":
        acts = [m for m in p.mentions if m.variable.role == "action"]
        lo, hi = 0, len(p.text)
    actions: dict[str, float] = {}
    for m in acts:
        # each action takes the nearest value after it in the clause, else one before it
        after = [q for q in p.values(lo, hi) if q.start >= m.start]
        before = [q for q in p.values(lo, hi) if q.start < m.start]
        qs = after[:1] or before[-1:]
        actions[m.variable.name] = _value_of(tool, p, m.variable, qs, p.text[lo:hi], "actions")
    if tool == "what_if" and not actions:
        unknown = [m for m in in_cond if m.variable.role != "action"]
        name = unknown[0].variable.name if unknown else _unnamed(tool, p, "actions")
        qs = p.values(lo, hi)
        actions[name] = qs[0].value if qs else 0.0
    states = find(p.text, p.schema, roles=("state",))
    targets = [m for m in states if not (cond and lo <= m.start < hi)]
    return actions, [m.variable.name for m in _top(targets)]


def _predict(tool: str, p: Parsed) -> dict[str, Any]:
    actions, targets = _actions_and_targets(tool, p)
    out: dict[str, Any] = {"variables": targets, "horizon": p.horizon(tool, 1)}
    if actions:
        out["actions"] = actions
    return out


def _optimise(tool: str, p: Parsed) -> dict[str, Any]:
    m = _pick(p, ("state",))
    if m is not None and m.variable.role != "state":
        raise CallRefused(tool, f"{m.variable.name!r} is a {m.variable.role} variable; "
                          "optimise needs a state variable", "variable")
    t = p.text
    if _MIN_STRONG.search(t) and not _MAX_STRONG.search(t):
        goal = "minimise"
    elif _MAX_STRONG.search(t) and not _MIN_STRONG.search(t):
        goal = "maximise"
    elif _MIN_WEAK.search(t) and not _MAX_WEAK.search(t):
        goal = "minimise"
    elif _MAX_WEAK.search(t):
        goal = "maximise"
    else:
        raise CallRefused(tool, "say whether to minimise or maximise", "goal")
    name = m.variable.name if m else _unnamed(tool, p, "variable")
    return {"variable": name, "goal": goal, "horizon": p.horizon(tool, 1)}


def _time_to(tool: str, p: Parsed) -> dict[str, Any]:
    m = _pick(p, ("state",))
    if m is None:
        return {"variable": _unnamed(tool, p, "variable"),
                "threshold": p.values()[0].value if p.values() else 0.0}
    var = m.variable
    out: dict[str, Any] = {"variable": var.name}
    values = p.values()
    if values:
        out["threshold"] = _value_of(tool, p, var, values[:1], p.text, "threshold")
    elif _UPPER.search(p.text) and var.upper is not None:
        out["threshold"] = var.upper
    elif _LOWER.search(p.text) and var.lower is not None:
        out["threshold"] = var.lower
    else:
        raise CallRefused(tool, f"the request gives no threshold for {var.name!r}", "threshold")
    durations = p.durations()
    if durations and re.search(r"\b(within|in the next|over the next)\b", p.text):
        out["horizon"] = p.horizon(tool, 100)
    return out


def _add_note(tool: str, p: Parsed) -> dict[str, Any]:
    text = _NOTE_LEAD.sub("", p.raw, count=1).strip()
    return {"text": text.rstrip(".") if text else p.raw}


def _add_variable(tool: str, p: Parsed) -> dict[str, Any]:
    t = p.text
    m = (re.search(r"\b(?:called|named)\s+['\"]?([a-z_][a-z0-9_]*)", t)
         or re.search(r"\bvariable\s+(?:for\s+(?:the\s+)?)?['\"]?([a-z_][a-z0-9_]*)", t)
         or re.search(r"\b(?:track|tracking|measure|measuring)\s+(?:the\s+)?([a-z_][a-z0-9_]*)",
                      t))
    if not m or m.group(1) in STOP or m.group(1) in {"called", "named"}:
        raise CallRefused(tool, "the request names no new variable (say 'called NAME')", "name")
    out: dict[str, Any] = {"name": m.group(1)}
    role = re.search(r"\b(state|action|context|control|input|setpoint)\b", t)
    if role:
        out["role"] = {"control": "action", "input": "action", "setpoint": "action"}.get(
            role.group(1), role.group(1))
    unit = re.search(r"\b(?:in|unit|units|measured in)\s+([^\s,;]+(?:\s+per\s+[a-z]+)?)", t)
    if unit and unit.group(1) not in NOT_UNITS:
        out["unit"] = _unit_text(p, unit.group(1))
    bounds = re.search(r"\bbetween\s+(-?[\d.]+)\s+and\s+(-?[\d.]+)", t)
    if bounds:
        out["lower"], out["upper"] = float(bounds.group(1)), float(bounds.group(2))
    return out


def _unit_text(p: Parsed, unit: str) -> str:
    """A unit as written in the request, in its original case ('kW', not 'kw')."""
    at = p.text.find(unit)
    return p.raw[at:at + len(unit)] if at >= 0 and len(p.raw) == len(p.text) else unit


def _named(tool: str, p: Parsed) -> str:
    if p.mentions:
        return p.mentions[0].variable.name
    m = re.search(r"\b(?:variable|signal)\s+['\"]?([a-z_][a-z0-9_]*)", p.text) or re.search(
        r"\b(?:remove|drop|delete|forget)\s+(?:the\s+)?([a-z_][a-z0-9_]*)", p.text)
    if m and m.group(1) not in STOP:
        return m.group(1)
    return _unnamed(tool, p, "name")


def _remove_variable(tool: str, p: Parsed) -> dict[str, Any]:
    return {"name": _named(tool, p)}


def _update_variable(tool: str, p: Parsed) -> dict[str, Any]:
    name = _named(tool, p)
    var = p.schema.variables.get(name)
    out: dict[str, Any] = {"name": name}
    t = p.text
    unit = re.search(r"\bunits?\b[^.]*?\b(?:to|as|in)\s+([^\s,;]+(?:\s+per\s+[a-z]+)?)", t)
    if unit:
        out["unit"] = _unit_text(p, unit.group(1))
        return out
    desc = re.search(r"\bdescription\b[^.]*?\bto\s+['\"]?(.+?)['\"]?\s*$", p.raw, re.IGNORECASE)
    if desc:
        out["description"] = desc.group(1).strip()
        return out
    values = p.values()
    if not values:
        raise CallRefused(tool, "the request gives no new bound, unit or description")
    value = values[-1].value
    if var is not None:
        try:
            value = in_unit(values[-1], var.unit)
        except UnitMismatch as exc:
            raise CallRefused(tool, str(exc)) from None
    if re.search(r"\b(lower|minimum|min|floor|least)\b", t):
        out["lower"] = value
    elif re.search(r"\b(upper|maximum|max|ceiling|most|limit|cap)\b", t):
        out["upper"] = value
    else:
        raise CallRefused(tool, "say which bound to change (upper or lower)")
    return out


def _actuate(tool: str, p: Parsed) -> dict[str, Any]:
    m = _pick(p, ("action",))
    if m is None:
        name = _unnamed(tool, p, "variable")
        values = p.values()
        out: dict[str, Any] = {"variable": name, "value": values[0].value if values else 0.0}
        if values and values[0].unit:
            out["unit"] = values[0].unit
        return out
    var = m.variable
    return {"variable": var.name,
            "value": _value_of(tool, p, var, p.values()[:1], p.text, "value")}


_EXTRACT = {
    "get_state": _get_state,
    "get_history": _get_history,
    "list_alerts": _list,
    "list_notes": _list,
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
