"""The operator agent: a request -> proposed calls -> validation -> policy -> results.

    ask(request)
      -> check_request                      empty, too long, another language: refused
      -> planner.plan(request, context)     embedded (router + parser) or a model
      -> for each proposed call:
           validate against the schema      names, roles, bounds, units
           grounded in the request          for a model's write calls (lmtwin.agent.safety)
           policy: auto | ask | deny        reads auto; schema and actuation ask
           auto: run now (actuation rate-limited per twin); ask: queue for approval
      -> Reply (every step is in the twin's audit log)
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from lmtwin.agent import execute
from lmtwin.agent.actuators import Actuator
from lmtwin.agent.journal import Journal, short
from lmtwin.agent.planners import Context, EmbeddedPlanner, Planner, Proposal
from lmtwin.agent.policy import Policy, RateLimiter
from lmtwin.agent.requests import MAX_CHARS, check_request
from lmtwin.agent.router import Router
from lmtwin.agent.safety import check_grounded
from lmtwin.agent.validate import Call, validate
from lmtwin.errors import (
    ActionDenied,
    AgentError,
    AlreadyDecided,
    LmtwinError,
    RequestRejected,
    ToolUnavailable,
    UnknownApproval,
)
from lmtwin.store.base import Record
from lmtwin.twin import Twin

Status = Literal["done", "pending", "refused", "denied", "failed", "rejected"]


@dataclass
class Outcome:
    """What became of one proposed call."""

    call_id: str
    tool: str
    args: dict[str, Any] | None
    status: Status
    result: Any = None
    error: str | None = None
    error_type: str | None = None
    exception: LmtwinError | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"call_id": self.call_id, "tool": self.tool, "args": self.args,
                "status": self.status, "result": self.result, "error": self.error,
                "error_type": self.error_type}


@dataclass
class Reply:
    """The answer to one request: one outcome per proposed call."""

    request_id: str
    request: str
    planner: str
    outcomes: list[Outcome]
    seconds: float

    @property
    def pending(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "pending"]

    def to_dict(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "request": self.request,
                "planner": self.planner, "seconds": self.seconds,
                "outcomes": [o.to_dict() for o in self.outcomes]}


class Agent:
    """Answers and acts on one twin, safely.

    Args:
        twin: the twin.
        planner: None for the embedded planner (MiniLM router + parser).
        actuator: applies approved actuations; None refuses actuation.
        policy: None for reads and notes auto, schema changes and actuation ask.
        time_unit: what one step of the twin's time is ("minute", "day", ...), to read
            durations in requests ("in a week"); "step" reads only "N steps".
        rate_limit, rate_window: at most ``rate_limit`` actuations per ``rate_window``
            seconds on this twin (counted from the audit log, so across restarts).
        episode: the episode whose state the tools read.
        router: the router used to check a model's write calls against the request
            (None: the embedded planner's, or MiniLM).

    Example:
        >>> agent = Agent(twin, actuator=LoggingActuator())     # doctest: +SKIP
        >>> reply = agent.ask("open the valve to 40%")           # doctest: +SKIP
        >>> agent.approve(reply.pending[0].call_id)              # doctest: +SKIP
    """

    def __init__(self, twin: Twin, planner: Planner | None = None,
                 actuator: Actuator | None = None, policy: Policy | None = None,
                 time_unit: str = "step", rate_limit: int = 10, rate_window: float = 60.0,
                 episode: str = "default", router: Router | None = None,
                 max_chars: int = MAX_CHARS) -> None:
        self.twin = twin
        self.planner: Planner = planner if planner is not None else EmbeddedPlanner(router)
        self.actuator = actuator
        self.policy = policy if policy is not None else Policy()
        self.time_unit = time_unit
        self.episode = episode
        self.max_chars = max_chars
        self._router = router
        self.journal = Journal(twin.store, twin.name)
        self.limiter = RateLimiter(rate_limit, rate_window,
                                   self.journal.actuation_times(time.time() - rate_window))
        self._lock = threading.RLock()
        self._results: list[dict[str, Any]] = []

    @property
    def router(self) -> Router:
        if self._router is None:
            planner_router = getattr(self.planner, "router", None)
            self._router = planner_router if isinstance(planner_router, Router) else Router()
        return self._router

    # --- requests --------------------------------------------------------------------
    def ask(self, request: str, by: str = "user", read_only: bool = False,
            time_unit: str | None = None) -> Reply:
        """Plan, validate and run (or queue) the calls a request asks for; with
        ``read_only``, every write is denied whatever the policy says; ``time_unit``
        overrides the agent's for this request.

        Raises RequestRejected for a request it cannot take, and the first refusal
        (CallRefused, ActionDenied, ...) when no proposed call could run or be queued.
        """
        started = time.perf_counter()
        request_id = uuid.uuid4().hex[:12]
        shown = request if not isinstance(request, str) or len(request) <= 500 else (
            request[:500] + f"... ({len(request):,} characters)")
        self.journal.audit("request", request_id=request_id, text=str(shown), by=by,
                           planner=self.planner.name)
        try:
            text = check_request(request, self.max_chars)
            proposals = self.planner.plan(text, self._context(time_unit or self.time_unit))
            if not proposals:
                raise RequestRejected("the planner proposed no tool call")
        except LmtwinError as exc:
            self.journal.audit("rejected", request_id=request_id, error=str(exc),
                               error_type=type(exc).__name__)
            raise
        outcomes = [self._propose(p, request_id, by, text, read_only,
                                  time_unit or self.time_unit) for p in proposals]
        if all(o.status in ("refused", "denied") for o in outcomes):
            first = outcomes[0].exception
            assert first is not None
            raise first
        for o in outcomes:
            if o.status == "done":
                self._results.append({"tool": o.tool, "result": short(o.result)})
        del self._results[:-5]
        return Reply(request_id, text, self.planner.name, outcomes,
                     time.perf_counter() - started)

    def call(self, tool: str, args: dict[str, Any] | None, by: str = "user") -> Outcome:
        """Validate and run (or queue) one explicit call, e.g. from MCP or the service.
        Raises CallRefused or ActionDenied when it cannot run or be queued."""
        request_id = uuid.uuid4().hex[:12]
        self.journal.audit("call", request_id=request_id, tool=str(tool)[:64], args=args, by=by)
        outcome = self._propose(Proposal(str(tool), args, "direct"), request_id, by, None)
        if outcome.status in ("refused", "denied"):
            assert outcome.exception is not None
            raise outcome.exception
        return outcome

    def _context(self, time_unit: str) -> Context:
        schema = self.twin.schema
        data = {
            "twin": self.twin.name,
            "time_unit": time_unit,
            "variables": schema.to_list(),
            "notes": [n.text for n in self.twin.notes[-10:]],
            "earlier_results": list(self._results),
        }
        return Context(self.twin.name, schema, time_unit, data)

    def _propose(self, p: Proposal, request_id: str, by: str, request: str | None,
                 read_only: bool = False, time_unit: str = "step") -> Outcome:
        call_id = uuid.uuid4().hex[:12]
        self.journal.audit("proposed", request_id=request_id, call_id=call_id, tool=p.tool,
                           args=p.args, source=p.source)
        try:
            if p.error is not None:
                raise p.error
            call = validate(p.tool, p.args, self.twin.schema)
            if request is not None and p.source != "embedded":
                # a model read the twin's data: its write calls must come from the request
                check_grounded(call, request, self.twin.schema, self.router, time_unit)
            if call.tool == "actuate" and self.actuator is None:
                raise ToolUnavailable("no actuator is configured for this twin")
        except AgentError as exc:
            self.journal.audit("refused", request_id=request_id, call_id=call_id, tool=p.tool,
                               error=str(exc), error_type=type(exc).__name__)
            return Outcome(call_id, p.tool, p.args, "refused", None, str(exc),
                           type(exc).__name__, exc)
        args = call.to_dict()["args"]
        self.journal.audit("validated", request_id=request_id, call_id=call_id, tool=call.tool,
                           args=args)
        decision = "deny" if read_only and call.kind != "read" else self.policy.decide(call.tool)
        if decision == "deny":
            denied = ActionDenied(f"the policy denies {call.tool} on this twin" if not read_only
                                  else f"{call.tool} changes the twin; this session is read-only")
            self.journal.audit("denied", request_id=request_id, call_id=call_id,
                               tool=call.tool, error=str(denied))
            return Outcome(call_id, call.tool, args, "denied", None, str(denied),
                           type(denied).__name__, denied)
        if decision == "ask":
            self.journal.queue(call_id, "pending", tool=call.tool, args=args,
                               request_id=request_id, by=by)
            self.journal.audit("pending", request_id=request_id, call_id=call_id,
                               tool=call.tool, args=args)
            return Outcome(call_id, call.tool, args, "pending")
        return self._run(call, call_id, request_id, by)

    def _run(self, call: Call, call_id: str, request_id: str | None, by: str) -> Outcome:
        args = call.to_dict()["args"]
        try:
            if call.tool == "actuate":
                self.limiter.take()
            with self._lock:
                result = execute.run(call, self.twin, self.actuator, self.episode)
        except ActionDenied as exc:
            self.journal.audit("denied", request_id=request_id, call_id=call_id,
                               tool=call.tool, error=str(exc))
            return Outcome(call_id, call.tool, args, "denied", None, str(exc),
                           type(exc).__name__, exc)
        except Exception as exc:  # an actuator is user code: any failure is recorded
            self.journal.audit("failed", request_id=request_id, call_id=call_id,
                               tool=call.tool, error=str(exc), error_type=type(exc).__name__)
            wrapped = exc if isinstance(exc, LmtwinError) else None
            return Outcome(call_id, call.tool, args, "failed", None, str(exc),
                           type(exc).__name__, wrapped)
        self.journal.audit("executed", request_id=request_id, call_id=call_id, tool=call.tool,
                           args=args, by=by, result=result)
        return Outcome(call_id, call.tool, args, "done", result)

    # --- approvals -------------------------------------------------------------------
    def pending(self) -> list[dict[str, Any]]:
        """Calls awaiting approval, oldest first."""
        return [c for c in self.journal.calls().values() if c["status"] == "pending"]

    def _pending_call(self, call_id: str) -> dict[str, Any]:
        entry = self.journal.calls().get(str(call_id))
        if entry is None:
            raise UnknownApproval(str(call_id)[:64])
        if entry["status"] != "pending":
            raise AlreadyDecided(call_id, entry["status"])
        return entry

    def approve(self, call_id: str, by: str = "user") -> Outcome:
        """Run a pending call (validated again: the schema may have changed since)."""
        with self._lock:
            entry = self._pending_call(call_id)
            try:
                call = validate(entry["tool"], entry["args"], self.twin.schema)
            except AgentError as exc:
                self.journal.queue(call_id, "rejected", by="validation", reason=str(exc))
                self.journal.audit("rejected", call_id=call_id, tool=entry["tool"],
                                   by="validation", error=str(exc))
                raise
            if call.tool == "actuate":
                # a spent budget leaves the call pending: it can be approved later
                self.limiter.take()
            self.journal.queue(call_id, "approved", by=by)
            self.journal.audit("approved", request_id=entry.get("request_id"), call_id=call_id,
                               tool=call.tool, by=by)
            args = call.to_dict()["args"]
            try:
                result = execute.run(call, self.twin, self.actuator, self.episode)
            except Exception as exc:  # recorded, and reported to the approver
                self.journal.audit("failed", call_id=call_id, tool=call.tool, error=str(exc),
                                   error_type=type(exc).__name__)
                return Outcome(call_id, call.tool, args, "failed", None, str(exc),
                               type(exc).__name__,
                               exc if isinstance(exc, LmtwinError) else None)
            self.journal.audit("executed", request_id=entry.get("request_id"),
                               call_id=call_id, tool=call.tool, args=args, by=by,
                               result=result)
            return Outcome(call_id, call.tool, args, "done", result)

    def reject(self, call_id: str, by: str = "user", reason: str = "") -> Outcome:
        """Reject a pending call; it never runs."""
        with self._lock:
            entry = self._pending_call(call_id)
            self.journal.queue(call_id, "rejected", by=by, reason=reason[:500])
            self.journal.audit("rejected", request_id=entry.get("request_id"), call_id=call_id,
                               tool=entry["tool"], by=by, reason=reason[:500])
            return Outcome(call_id, entry["tool"], entry["args"], "rejected")

    def audit(self, after: int = 0, limit: int | None = None) -> list[Record]:
        """The twin's audit log, oldest first."""
        return self.journal.entries(after, limit)
