"""The operator agent over HTTP: plain-language requests, approvals, the audit log.

One ``lmtwin.agent.Agent`` per loaded twin, on the embedded planner (MiniLM, loaded on
the first request). A caller with only the read scope gets read-only answers; writes
(notes, schema changes, actuation) need the write scope, and schema changes and
actuation wait for approval (``POST /twins/{name}/approvals/{id}``). Actuation reaches
the real system through ``app.state.actuator`` (an ``lmtwin.agent.Actuator`` set by
whoever deploys the service); without one it is refused.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from lmtwin.service.deps import ERRORS, Meter, Read, Service, Write

router = APIRouter(tags=["agent"])
_lock = threading.Lock()
# the agent runs forecasts of 200 sampled paths: a request costs that many path-steps
# up front (more when it asks for a long horizon is not known before planning)
COST = 200


class AgentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request: Annotated[str, Field(max_length=200_000,
                                  description="what to ask or do, in plain English")]
    time_unit: Annotated[str, Field(max_length=20, description=(
        "what one time step of the twin is (second, minute, hour, day, week or step), to "
        "read durations such as 'in a week'"))] = "step"


class OutcomeOut(BaseModel):
    call_id: str
    tool: str
    args: dict[str, Any] | None
    status: Literal["done", "pending", "refused", "denied", "failed", "rejected"]
    result: Any = None
    error: str | None = None
    error_type: str | None = None


class ReplyOut(BaseModel):
    request_id: str
    request: str
    planner: str
    seconds: float
    outcomes: list[OutcomeOut]


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["approve", "reject"]
    reason: Annotated[str, Field(max_length=500)] = ""


class AuditOut(BaseModel):
    id: int
    at: float
    payload: dict[str, Any]


_routers: list[Any] = []  # one per process: the sentence model is loaded once


def _agent(request: Request, s: Any, name: str) -> Any:
    from lmtwin.agent import Agent, Router

    twin = s.entry(name).twin
    state = request.app.state
    with _lock:
        if not _routers:
            _routers.append(Router())
        if getattr(state, "agents", None) is None:
            state.agents = {}
        agent = state.agents.get(name)
        if agent is None or agent.twin is not twin:
            agent = Agent(twin, actuator=getattr(state, "actuator", None),
                          router=_routers[0])
            state.agents[name] = agent
    return agent


@router.post("/twins/{name}/agent", response_model=ReplyOut, responses=ERRORS)
def ask(name: str, body: AgentIn, request: Request, s: Service, meter: Meter
        ) -> dict[str, Any]:
    """Plan, validate and run (or queue for approval) what the request asks; refusals
    answer 422 with the reason (CallRefused, RequestRejected)."""
    meter.charge(COST)
    who = meter.principal
    agent = _agent(request, s, name)
    reply = agent.ask(body.request, by=f"key:{who.id}", time_unit=body.time_unit,
                      read_only=not who.allows("write", name))
    return dict(reply.to_dict())


@router.get("/twins/{name}/approvals", response_model=list[dict[str, Any]], responses=ERRORS)
def pending(name: str, request: Request, s: Service, _: Read) -> list[dict[str, Any]]:
    """Calls awaiting approval, oldest first."""
    return list(_agent(request, s, name).pending())


@router.post("/twins/{name}/approvals/{call_id}", response_model=OutcomeOut, responses=ERRORS)
def decide(name: str, call_id: str, body: DecisionIn, request: Request, s: Service,
           who: Write) -> dict[str, Any]:
    """Approve (run now) or reject a pending call; an unknown id is 404, a call already
    decided 409."""
    agent = _agent(request, s, name)
    by = f"key:{who.id}"
    out = (agent.approve(call_id, by=by) if body.decision == "approve"
           else agent.reject(call_id, by=by, reason=body.reason))
    return dict(out.to_dict())


@router.get("/twins/{name}/audit", response_model=list[AuditOut], responses=ERRORS)
def audit(name: str, request: Request, s: Service, _: Read,
          after: Annotated[int, Query(ge=0, description="only entries with a larger id")] = 0,
          limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> list[dict[str, Any]]:
    """The append-only audit log: every request, proposed call, validation result,
    approval and outcome."""
    return [{"id": r.id, "at": r.at, "payload": r.payload}
            for r in _agent(request, s, name).audit(after, limit)]
