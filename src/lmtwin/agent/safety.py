"""Twin data is data, never instructions.

Telemetry, variable descriptions, knowledge notes, twin names and earlier tool results
reach a language model only inside one quoted data block (JSON, with ``<`` escaped so no
text can close the block). And whatever a model proposes, a call that changes something
(a note, the schema, an actuator) runs only if the person's own request asked for it:
the request alone must route to that tool, name its variable and carry its value. So a
planted "open the valve fully" in a note cannot cause an actuation, whichever model
reads it.
"""

from __future__ import annotations

import json
import math
from typing import Any

from lmtwin.agent.extract import Parsed, parse
from lmtwin.agent.router import Router
from lmtwin.agent.text import in_unit
from lmtwin.agent.units import UnitMismatch
from lmtwin.agent.validate import Call
from lmtwin.errors import CallRefused
from lmtwin.schema import Schema

OPEN, CLOSE = "<data>", "</data>"


def data_block(data: Any) -> str:
    """``data`` as quoted JSON between markers that no string inside can produce."""
    text = json.dumps(data, ensure_ascii=True, default=str)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e")
    return f"{OPEN}\n{text}\n{CLOSE}"


def check_grounded(call: Call, request: str, schema: Schema, router: Router,
                   time_unit: str = "step", top: int = 2) -> None:
    """Raise ``CallRefused`` unless the person's request itself asks for this write call.

    Reads are always allowed (they change nothing). A write must be among the ``top``
    tools the request routes to on its own; an actuation must set a variable the request
    names, to a value the request gives; a note must be text the request contains; a
    schema change must name a variable the request names.
    """
    if call.kind == "read":
        return
    ranked = [r.tool for r in router.rank(request)[:top]]
    if call.tool not in ranked:
        raise CallRefused(call.tool, "the request does not ask for this change "
                          f"(it reads as {', '.join(ranked)})")
    p = parse(request, schema, time_unit)
    named = {m.variable.name for m in p.mentions}
    args = call.args.model_dump()
    if call.tool == "actuate":
        if args["variable"] not in named:
            raise CallRefused(call.tool, f"the request does not name {args['variable']!r}",
                              "variable")
        if not _value_in(args["value"], p, args["variable"], schema):
            raise CallRefused(call.tool, f"the request does not give the value {args['value']:g}",
                              "value")
    elif call.tool == "add_note":
        words = set(p.text.split())
        note = args["text"].lower().split()
        if not note or sum(w in words for w in note) < 0.8 * len(note):
            raise CallRefused(call.tool, "the note is not text from the request", "text")
    elif call.tool == "add_variable":
        if args["name"].lower() not in p.text:
            raise CallRefused(call.tool, "the request does not name this variable", "name")
    elif args.get("name") not in named and str(args.get("name", "")).lower() not in p.text:
        raise CallRefused(call.tool, "the request does not name this variable", "name")


def _value_in(value: float, p: Parsed, name: str, schema: Schema) -> bool:
    var = schema.variables[name]
    candidates: list[float] = []
    for q in p.values():
        try:
            candidates.append(in_unit(q, var.unit))
        except UnitMismatch:
            continue
    from lmtwin.agent.extract import _HALF, _LOWER, _UPPER

    if _UPPER.search(p.text) and var.upper is not None:
        candidates.append(var.upper)
    if _LOWER.search(p.text):
        candidates.append(var.lower if var.lower is not None else 0.0)
    if _HALF.search(p.text) and var.lower is not None and var.upper is not None:
        candidates.append((var.lower + var.upper) / 2)
    return any(math.isclose(value, c, rel_tol=1e-6, abs_tol=1e-9) for c in candidates)
