"""FastAPI dependencies shared by every route group: the service, the caller's key and
scope, the idempotency header, the cost meter, and the error responses to document.

    from lmtwin.service.deps import ERRORS, Admin, Meter, Read, Service, Write

    @router.get("/twins/{name}/thing", responses=ERRORS)
    def thing(name: str, s: Service, _: Read) -> dict[str, Any]: ...

``Read``/``Write``/``Admin`` authenticate the caller and check the scope on the path's
``{name}`` twin (401/403). ``Meter`` charges a request's cost to the caller's budget
(see ``lmtwin.service.limits``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Request

from lmtwin.service import models as m
from lmtwin.service.auth import Principal, Scope, authenticate, require
from lmtwin.service.core import TwinService
from lmtwin.service.limits import CostLimiter

# the error bodies each route may answer, for the OpenAPI document
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": m.ErrorOut} for code in (400, 401, 403, 404, 409, 413, 422, 429, 500, 503)}


async def svc(request: Request) -> TwinService:
    service: TwinService = request.app.state.service
    return service


def auth(scope: Scope, allow_query: bool = False) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that authenticates the caller and checks ``scope`` on the path's twin.

    Async on purpose: with the key cache it costs microseconds, and sync dependencies
    would cost every request a hop through the thread pool."""
    async def dependency(request: Request) -> Principal:
        s: TwinService = request.app.state.service
        principal = authenticate(request, s.settings, s.db, allow_query,
                                 request.app.state.keys)
        require(principal, scope, request.path_params.get("name"))
        return principal
    return dependency


class CostMeter:
    """Charges the calling principal's cost budget; see ``lmtwin.service.limits``."""

    def __init__(self, limiter: CostLimiter, principal: Principal) -> None:
        self.limiter = limiter
        self.principal = principal

    def charge(self, cost: int) -> None:
        """Spend ``cost`` path-steps, or raise PayloadTooLarge (413) / RateLimited (429)."""
        self.limiter.charge(self.principal.id, cost)


async def meter(request: Request) -> CostMeter:
    """The caller's meter: authenticated (read scope at least, on the path's twin)."""
    s: TwinService = request.app.state.service
    principal = authenticate(request, s.settings, s.db, cache=request.app.state.keys)
    require(principal, "read", request.path_params.get("name"))
    return CostMeter(request.app.state.limiter, principal)


# module-level aliases: FastAPI resolves string annotations in the routes' modules
Read = Annotated[Principal, Depends(auth("read"))]
ReadQuery = Annotated[Principal, Depends(auth("read", allow_query=True))]
Write = Annotated[Principal, Depends(auth("write"))]
Admin = Annotated[Principal, Depends(auth("admin"))]
Service = Annotated[TwinService, Depends(svc)]
Meter = Annotated[CostMeter, Depends(meter)]
IdemKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]
