"""The web app, built by a factory from typed settings: middleware, error mapping, and
one router per route group (``lmtwin.service.routes.ROUTERS``); routes are thin over
TwinService.

    create_app(Settings(store="twins.db"))       # then: uvicorn, or `lmtwin serve`
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from lmtwin.errors import (
    ActionDenied,
    ActuationRateLimited,
    AlreadyDecided,
    BackendError,
    BackendUnavailable,
    CallRefused,
    DependencyNotInstalled,
    InvalidValue,
    LmtwinError,
    NotReady,
    RequestRejected,
    SchemaError,
    StoreError,
    ToolUnavailable,
    UnknownApproval,
    UnknownVariable,
)
from lmtwin.llm.base import LLMBackend
from lmtwin.service.auth import KeyCache
from lmtwin.service.core import TwinService
from lmtwin.service.docs import swagger_ui
from lmtwin.service.errors import (
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    TwinUnavailable,
    Unauthorized,
)
from lmtwin.service.limits import CostLimiter
from lmtwin.service.middleware import AccessLog, BodyLimit
from lmtwin.service.routes import ROUTERS
from lmtwin.service.routes.agent import mount_mcp
from lmtwin.service.settings import Settings

log = logging.getLogger("lmtwin.service")

ADMIN_BANNER = """
lmtwin: no admin key was configured, so one was generated. It is shown only now; the
service stores only its hash. Send it as 'Authorization: Bearer <key>':

    {key}

Keep it, or set LMTWIN_ADMIN_KEY for the next start (create narrower keys with POST /keys).
"""

# error type -> HTTP status; the most specific class in an exception's MRO wins
STATUS: dict[type, int] = {
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    Unauthorized: 401,
    Forbidden: 403,
    RateLimited: 429,
    TwinUnavailable: 503,
    UnknownVariable: 422,
    InvalidValue: 422,
    SchemaError: 422,
    NotReady: 409,
    BackendUnavailable: 503,
    BackendError: 502,
    StoreError: 503,
    DependencyNotInstalled: 501,
    UnknownApproval: 404,
    AlreadyDecided: 409,
    ActuationRateLimited: 429,
    ActionDenied: 403,
    CallRefused: 422,
    RequestRejected: 422,
    ToolUnavailable: 501,
    LmtwinError: 400,
}


def status_of(exc: LmtwinError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def _error_body(exc: LmtwinError) -> dict[str, Any]:
    body: dict[str, Any] = {"error": type(exc).__name__, "detail": str(exc)}
    if isinstance(exc, UnknownVariable):
        body["variable"], body["known"] = exc.name, exc.known
    elif isinstance(exc, InvalidValue):
        body["variable"], body["reason"] = exc.name, exc.reason
    elif isinstance(exc, TwinUnavailable):
        body["reason"] = exc.reason
    return body


def _headers(exc: LmtwinError, status: int) -> dict[str, str] | None:
    if status == 401:
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, RateLimited):
        return {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, ActuationRateLimited):
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    return None


def create_app(settings: Settings | None = None, backend: LLMBackend | None = None,
               service: TwinService | None = None) -> FastAPI:
    """The lmtwin web app.

    Args:
        settings: None for ``Settings.from_env()``.
        backend: a language model shared by every twin (None: per ``settings.llm``).
        service: an existing TwinService (tests); None builds one at start-up.
    """
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        running: TwinService = (service if service is not None
                                else await run_in_threadpool(TwinService, settings, backend))
        running.events.bind(asyncio.get_running_loop())
        app.state.service = running
        app.state.keys = KeyCache()
        app.state.limiter = CostLimiter(settings.cost_budget, settings.cost_window_s,
                                        settings.max_simulation_steps)
        ingest = None
        if settings.mqtt_host:
            from lmtwin.service.mqtt import MqttIngest

            ingest = MqttIngest(running, settings.mqtt_host, settings.mqtt_port,
                                settings.mqtt_prefix)
            ingest.start()
        app.state.mqtt = ingest
        if not settings.auth:
            log.warning("authentication is off (insecure): anyone who can connect may "
                        "create, change and delete twins")
        if running.generated_admin_key is not None:
            # printed, never logged: logs are kept and shipped, the terminal is the owner's
            print(ADMIN_BANNER.format(key=running.generated_admin_key), file=sys.stderr,
                  flush=True)
        try:
            yield
        finally:
            if ingest is not None:
                ingest.stop()
            if service is None:
                running.close()

    app = FastAPI(title="lmtwin", version="0.1.0", lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  description="Digital twins that learn in context: ingest, state, "
                              "predictions with intervals, live updates.")
    swagger_ui(app)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(AccessLog)

    @app.exception_handler(LmtwinError)
    async def lmtwin_error(request: Request, exc: LmtwinError) -> JSONResponse:
        status = status_of(exc)
        return JSONResponse(_error_body(exc), status_code=status, headers=_headers(exc, status))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = jsonable_errors(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse({"error": "MalformedJSON", "detail": errors}, status_code=400)
        return JSONResponse({"error": "ValidationError", "detail": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # unknown routes (404), wrong methods (405): the same JSON shape as every error
        kind = "".join(w.capitalize() for w in HTTPStatus(exc.status_code).phrase.split())
        return JSONResponse({"error": kind.replace("-", ""), "detail": exc.detail},
                            status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # a bug: logged with its traceback (by the server, which re-raises it after this
        # answer), answered as the documented JSON error, never plain text
        return JSONResponse({"error": "InternalError", "detail": "an unexpected error; the "
                             "server logged it"}, status_code=500)

    for router in ROUTERS:
        app.include_router(router)
    mount_mcp(app)  # the agent over MCP (streamable HTTP), read-only, keys as everywhere
    return app


def jsonable_errors(errors: Any) -> list[dict[str, Any]]:
    """pydantic's error list without objects JSON cannot carry (exceptions in ``ctx``)."""
    out = []
    for e in errors:
        item = {k: v for k, v in dict(e).items() if k in ("type", "loc", "msg")}
        item["loc"] = list(item.get("loc", ()))
        out.append(item)
    return out
