"""Planners turn a request into proposed tool calls; the agent validates what they propose.

``EmbeddedPlanner`` is the offline path: the router picks the tool by nearest example
requests (MiniLM), the parser fills the arguments from the request against the schema.
``OpenAIPlanner`` (lmtwin.agent.openai_planner) uses a server's native tool calling;
``GenerativePlanner`` (lmtwin.agent.generative) a grammar-constrained small model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from lmtwin.agent.cues import cues
from lmtwin.agent.extract import extract, parse
from lmtwin.agent.router import Ranked, Router
from lmtwin.errors import AgentError, CallRefused, RequestRejected
from lmtwin.schema import Schema


@dataclass
class Context:
    """What a planner may know besides the request. ``data`` (notes, descriptions,
    earlier results) is data, never instructions: model planners get it only inside a
    quoted data block."""

    twin: str
    schema: Schema
    time_unit: str = "step"
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Proposal:
    """A proposed call, or the refusal met while building it (``error``)."""

    tool: str
    args: dict[str, Any] | None
    source: str
    error: AgentError | None = None
    score: float | None = None


@runtime_checkable
class Planner(Protocol):
    """Implementations set ``name`` and return at least one proposal or raise
    RequestRejected."""

    name: str

    def plan(self, request: str, context: Context) -> list[Proposal]: ...


_SPLIT = re.compile(r"(?<=[.;?!])\s+(?=\S)|\s+and then\s+|;\s*")


def split(request: str) -> list[str]:
    """Sentences of a request ('...; then ...' or '... and then ...')."""
    return [p.strip(" .") for p in _SPLIT.split(request) if p and p.strip(" .")]


def masked(request: str, schema: Schema) -> str:
    """The request with variable mentions as 'the thing' and numbers as '5', so the
    router reads the intent words, not the system's vocabulary."""
    p = parse(request, schema, "step")
    spans = sorted({s for m in p.mentions for s in m.spans})
    text = p.text
    out, last = [], 0
    for a, b in spans:
        if a < last:
            continue
        out.append(text[last:a])
        out.append("thing")
        last = b
    out.append(text[last:])
    return re.sub(r"-?\d+(?:\.\d+)?", "5", "".join(out))


class EmbeddedPlanner:
    """Router + parser, offline and fast (milliseconds a request after loading).

    Args:
        router: None for MiniLM over the packaged examples.
        threshold: a request whose best tool scores below this is not understood.
        mask: route on the masked request (see ``masked``).
    """

    name = "embedded"

    def __init__(self, router: Router | None = None, threshold: float = 0.35,
                 mask: bool = True, cue_bonus: float = 0.3) -> None:
        self.router = router if router is not None else Router()
        self.threshold = threshold
        self.mask = mask
        self.cue_bonus = cue_bonus

    def route(self, text: str, schema: Schema) -> list[Ranked]:
        """Tools best first: example similarity, plus ``cue_bonus`` where a cue fires."""
        ranked = self.router.rank(masked(text, schema) if self.mask else text)
        if not self.cue_bonus:
            return ranked
        fired = cues(parse(text, schema, "step"))
        boosted = [Ranked(r.tool, r.score + self.cue_bonus * (r.tool in fired)) for r in ranked]
        return sorted(boosted, key=lambda r: -r.score)

    def understood(self, text: str, schema: Schema, best: Ranked) -> bool:
        """A request is understood when a cue fires, it names a variable of the twin, or
        it lies close to an example: similarity alone does not separate terse requests
        from small talk (both 0.2-0.3 in MiniLM space)."""
        p = parse(text, schema, "step")
        return best.score >= self.threshold or bool(p.mentions) or bool(cues(p))

    def plan(self, request: str, context: Context) -> list[Proposal]:
        out = []
        for part in split(request) or [request]:
            ranked = self.route(part, context.schema)
            best = ranked[0]
            if not self.understood(part, context.schema, best):
                raise RequestRejected(
                    f"not understood: {part!r} is not close to any known request (best: "
                    f"{best.tool}, similarity {best.score:.2f} < {self.threshold}); ask about "
                    "state, history, forecasts, scenarios, thresholds, alerts, notes, the "
                    "schema, or set an action")
            try:
                args = extract(best.tool, part, context.schema, context.time_unit)
                out.append(Proposal(best.tool, args, self.name, score=best.score))
            except CallRefused as exc:
                out.append(Proposal(best.tool, None, self.name, exc, best.score))
        return out
