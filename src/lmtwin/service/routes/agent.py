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


class _ServiceTwins:
    """The service's twins for the MCP server (``lmtwin.agent.mcp_server.Twins``)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def names(self) -> list[str]:
        return list(self.app.state.service.names())

    def agent(self, name: str) -> Any:
        from starlette.requests import Request as Plain

        request = Plain({"type": "http", "app": self.app, "path_params": {"name": name}})
        return _agent(request, self.app.state.service, name)


def _guard(app: Any) -> Any:
    """Each MCP call needs the caller's key, with read (or write) scope on its twin."""
    from lmtwin.service.auth import authenticate, require

    def guard(request: Any, twin: str, write: bool) -> None:
        s = app.state.service
        principal = authenticate(request, s.settings, s.db, cache=app.state.keys)
        require(principal, "write" if write else "read", twin)

    return guard


def mount_mcp(app: Any, path: str = "/mcp") -> None:
    """Serve the agent over MCP (streamable HTTP, stateless, JSON answers) at ``path``:
    read-only tools and twins as resources, each call authenticated like every route.
    The MCP session manager starts with the first MCP request, on the server's loop."""
    import asyncio

    from starlette.requests import Request as Plain
    from starlette.responses import JSONResponse

    from lmtwin.agent.mcp_server import build_server
    from lmtwin.errors import DependencyNotInstalled, LmtwinError
    from lmtwin.service.auth import authenticate
    from lmtwin.service.errors import Unauthorized

    try:
        server = build_server(_ServiceTwins(app), writes=False, guard=_guard(app))
    except DependencyNotInstalled:  # pragma: no cover - no 'agent' extra: no MCP mount
        return
    inner = server.streamable_http_app(streamable_http_path="/", stateless_http=True,
                                       json_response=True)
    manager = server.session_manager
    started: list[asyncio.Event] = []

    async def keep_running(ready: asyncio.Event) -> None:
        async with manager.run():
            ready.set()
            await asyncio.Event().wait()  # until the server's loop ends

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            s = app.state.service
            try:  # a valid key for anything at all; each call checks its twin's scope
                authenticate(Plain(scope), s.settings, s.db, cache=app.state.keys)
            except LmtwinError as exc:
                status = 401 if isinstance(exc, Unauthorized) else 403
                await JSONResponse({"error": type(exc).__name__, "detail": str(exc)},
                                   status_code=status)(scope, receive, send)
                return
        if scope["type"] == "http" and not started:
            started.append(asyncio.Event())
            app.state.mcp_task = asyncio.get_running_loop().create_task(
                keep_running(started[0]))
        if started:
            await started[0].wait()
        await inner(scope, receive, send)

    app.mount(path, asgi)
