"""The web app, built by a factory from typed settings; routes are thin over TwinService.

    create_app(Settings(store="twins.db"))       # then: uvicorn, or `lmtwin serve`
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lmtwin.assimilation import Noise
from lmtwin.errors import (
    BackendError,
    BackendUnavailable,
    DependencyNotInstalled,
    InvalidValue,
    LmtwinError,
    NotReady,
    SchemaError,
    StoreError,
    UnknownVariable,
)
from lmtwin.llm.base import LLMBackend
from lmtwin.schema import Variable
from lmtwin.service import models as m
from lmtwin.service.auth import KeyCache, Principal, authenticate, new_key, require
from lmtwin.service.core import TwinService
from lmtwin.service.dashboard import dashboard_page
from lmtwin.service.errors import (
    Conflict,
    Forbidden,
    KeyNotFound,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from lmtwin.service.settings import Settings

log = logging.getLogger("lmtwin.service")

# error type -> HTTP status; the most specific class in an exception's MRO wins
STATUS: dict[type, int] = {
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    Unauthorized: 401,
    Forbidden: 403,
    UnknownVariable: 422,
    InvalidValue: 422,
    SchemaError: 422,
    NotReady: 409,
    BackendUnavailable: 503,
    BackendError: 502,
    StoreError: 503,
    DependencyNotInstalled: 501,
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
    return body


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, before any parsing."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._refuse(send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        payload = json.dumps({"error": "PayloadTooLarge",
                              "detail": f"the body exceeds {self.limit} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})


async def svc(request: Request) -> TwinService:
    service: TwinService = request.app.state.service
    return service


def auth(scope: Any, allow_query: bool = False) -> Callable[[Request], Awaitable[Principal]]:
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


# module-level aliases: FastAPI resolves string annotations in this module's globals
Read = Annotated[Principal, Depends(auth("read"))]
ReadQuery = Annotated[Principal, Depends(auth("read", allow_query=True))]
Write = Annotated[Principal, Depends(auth("write"))]
Admin = Annotated[Principal, Depends(auth("admin"))]
Service = Annotated[TwinService, Depends(svc)]
IdemKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]


class AccessLog:
    """One line per request: method, path, status, time. Never the query string (it may
    carry a key) nor any header. Plain ASGI, so streams pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                log.info("%s %s %d %.1f ms", scope["method"], scope["path"], status,
                         1000 * (time.perf_counter() - started))
            await send(message)

        await self.app(scope, receive, sending)


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
        ingest = None
        if settings.mqtt_host:
            from lmtwin.service.mqtt import MqttIngest

            ingest = MqttIngest(running, settings.mqtt_host, settings.mqtt_port,
                                settings.mqtt_prefix)
            ingest.start()
        app.state.mqtt = ingest
        if not settings.auth:
            log.warning("authentication is off: set an admin key to require API keys")
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
    _swagger_ui(app)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)

    app.add_middleware(AccessLog)

    @app.exception_handler(LmtwinError)
    async def lmtwin_error(request: Request, exc: LmtwinError) -> JSONResponse:
        status = status_of(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(_error_body(exc), status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = jsonable_errors(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse({"error": "MalformedJSON", "detail": errors}, status_code=400)
        return JSONResponse({"error": "ValidationError", "detail": errors}, status_code=422)

    errors: dict[int | str, dict[str, Any]] = {
        code: {"model": m.ErrorOut} for code in (400, 401, 403, 404, 409, 413, 422)}

    # --- twins -------------------------------------------------------------------
    @app.get("/health")
    def health(s: Service) -> dict[str, Any]:
        mqtt = getattr(app.state, "mqtt", None)
        return {"status": "ok", "twins": len(s.names()), "counters": s.counters,
                "mqtt": None if mqtt is None else mqtt.status()}

    @app.get("/twins", responses=errors)
    def list_twins(s: Service, request: Request) -> list[str]:
        principal = authenticate(request, s.settings, s.db, cache=app.state.keys)
        return [n for n in s.names() if principal.allows("read", n)]

    @app.post("/twins", status_code=201, response_model=m.TwinOut, responses=errors)
    def create_twin(body: m.TwinIn, s: Service, _: Admin) -> dict[str, Any]:
        variables = [Variable(v.name, v.role, v.unit, v.description, _f(v.lower), _f(v.upper))
                     for v in body.variables]
        noise = {v.name: Noise(v.noise.sensor, v.noise.process)
                 for v in body.variables if v.noise is not None}
        return s.create(body.name, variables, body.strict, body.level, body.description,
                        body.knowledge, noise)

    @app.get("/twins/{name}", response_model=m.TwinOut, responses=errors)
    def get_twin(name: str, s: Service, _: Read) -> dict[str, Any]:
        return s.describe(name)

    @app.patch("/twins/{name}", response_model=m.TwinOut, responses=errors)
    def patch_twin(name: str, body: m.TwinPatch, s: Service, _: Admin) -> dict[str, Any]:
        return s.update(name, body.strict, body.level, body.description)

    @app.delete("/twins/{name}", status_code=204, responses=errors)
    def delete_twin(name: str, s: Service, _: Admin) -> Response:
        s.archive(name)
        return Response(status_code=204)

    # --- schema and knowledge ------------------------------------------------------
    @app.get("/twins/{name}/schema", responses=errors)
    def get_schema(name: str, s: Service, _: Read, as_of: float | None = None
                   ) -> dict[str, Any]:
        return s.schema(name, as_of)

    @app.post("/twins/{name}/variables", status_code=201, responses=errors)
    def add_variable(name: str, body: m.VariableIn, s: Service, _: Write) -> dict[str, Any]:
        var = Variable(body.name, body.role, body.unit, body.description, _f(body.lower),
                       _f(body.upper))
        noise = Noise(body.noise.sensor, body.noise.process) if body.noise else None
        return s.add_variable(name, var, noise)

    @app.patch("/twins/{name}/variables/{variable}", responses=errors)
    def patch_variable(name: str, variable: str, body: m.VariablePatch, s: Service,
                       _: Write) -> dict[str, Any]:
        fields = body.model_dump(exclude_unset=True, exclude={"noise", "clear_noise"})
        noise = Noise(body.noise.sensor, body.noise.process) if body.noise else None
        return s.describe_variable(name, variable, fields, noise, body.clear_noise)

    @app.delete("/twins/{name}/variables/{variable}", responses=errors)
    def remove_variable(name: str, variable: str, s: Service, _: Write) -> dict[str, Any]:
        return s.remove_variable(name, variable)

    @app.post("/twins/{name}/knowledge", status_code=201, response_model=m.NoteOut,
              responses=errors)
    def add_knowledge(name: str, body: m.KnowledgeIn, s: Service, _: Write) -> dict[str, Any]:
        return s.add_knowledge(name, body.text)

    @app.get("/twins/{name}/knowledge", response_model=list[m.NoteOut], responses=errors)
    def get_knowledge(name: str, s: Service, _: Read,
                      as_of: float | None = None) -> list[dict[str, Any]]:
        return s.knowledge(name, as_of)

    # --- mirror --------------------------------------------------------------------
    @app.post("/twins/{name}/observations", status_code=201, response_model=m.IngestOut,
              responses=errors)
    def observe(name: str, body: m.ObservationIn, s: Service, _: Write,
                idempotency_key: IdemKey = None) -> dict[str, Any]:
        return s.ingest(name, [body.model_dump()], idempotency_key)

    @app.post("/twins/{name}/observations/batch", status_code=201, response_model=m.IngestOut,
              responses=errors)
    def observe_batch(name: str, body: m.BatchIn, s: Service, _: Write,
                      idempotency_key: IdemKey = None) -> dict[str, Any]:
        return s.ingest(name, [o.model_dump() for o in body.observations], idempotency_key)

    @app.get("/twins/{name}/history", response_model=list[m.ObservationOut], responses=errors)
    def history(name: str, s: Service, _: Read, variable: str | None = None,
                episode: str | None = None, t_from: float | None = None,
                t_to: float | None = None, as_of: float | None = None,
                limit: Annotated[int, Query(ge=1, le=100_000)] = 1000) -> list[dict[str, Any]]:
        return s.history(name, variable, episode, t_from, t_to, as_of, limit)

    @app.get("/twins/{name}/state", responses=errors)
    async def state(name: str, s: Service, _: Read, episode: str = "default",
                    as_of: float | None = None) -> dict[str, Any]:
        # the latest state is served from memory on the event loop: no thread hop
        view = None if as_of is not None else s.cached_state(name, episode)
        if view is not None:
            return view
        return await run_in_threadpool(s.state, name, episode, as_of)

    # --- intervene -----------------------------------------------------------------
    @app.post("/twins/{name}/predict", response_model=m.PredictionOut, responses=errors)
    def predict(name: str, body: m.PredictIn, s: Service, _: Read) -> dict[str, Any]:
        return s.predict(name, body.state, body.action, body.episode, body.score)

    @app.get("/twins/{name}/performance", responses=errors)
    def performance(name: str, s: Service, _: Read,
                    last: Annotated[int, Query(ge=1, le=10_000)] = 200) -> dict[str, Any]:
        return s.performance(name, last)

    @app.post("/twins/{name}/simulate", response_model=m.SimulationOut, responses=errors)
    def simulate(name: str, body: m.SimulateIn, s: Service, _: Read) -> dict[str, Any]:
        return s.simulate(name, body.state, body.plan, body.n_paths, body.horizon, body.episode)

    # --- live ------------------------------------------------------------------------
    @app.get("/twins/{name}/events", responses=errors,
             response_class=StreamingResponse)
    async def events(name: str, request: Request,
                     _: ReadQuery,
                     episode: str = "default") -> StreamingResponse:
        s: TwinService = request.app.state.service
        first = await run_in_threadpool(s.state, name, episode)
        queue = s.events.subscribe(name)

        async def stream() -> AsyncIterator[str]:
            try:
                hello = json.dumps({"states": {episode: first}})
                yield f"retry: 2000\nevent: state\ndata: {hello}\n\n"
                while True:
                    try:
                        yield await asyncio.wait_for(queue.get(), s.settings.sse_ping_s)
                    except TimeoutError:
                        yield ": ping\n\n"
            finally:
                s.events.unsubscribe(name, queue)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    @app.get("/twins/{name}/dashboard", response_class=HTMLResponse, responses=errors)
    def dashboard(name: str, s: Service,
                  _: ReadQuery) -> str:
        s.entry(name)
        return dashboard_page(name)

    # --- keys ------------------------------------------------------------------------
    @app.post("/keys", status_code=201, response_model=m.KeyOut, responses=errors)
    def create_key(body: m.KeyIn, s: Service, _: Admin) -> dict[str, Any]:
        key_id, secret, digest = new_key()
        created = s.db.add_key(key_id, body.name, digest, body.twins, sorted(set(body.scopes)))
        log.info("API key %s (%s) created", key_id, body.name)
        return {"id": key_id, "name": body.name, "twins": body.twins,
                "scopes": sorted(set(body.scopes)), "created_at": created, "key": secret}

    @app.get("/keys", response_model=list[m.KeyOut], responses=errors)
    def list_keys(s: Service, _: Admin) -> list[dict[str, Any]]:
        return s.db.keys()

    @app.delete("/keys/{key_id}", status_code=204, responses=errors)
    def revoke_key(key_id: str, s: Service, _: Admin) -> Response:
        if not s.db.revoke_key(key_id):
            raise KeyNotFound(key_id)
        app.state.keys.clear()
        log.info("API key %s revoked", key_id)
        return Response(status_code=204)

    return app


DOCS_ASSETS = "/docs-assets"
DOCS_SPEC = "/docs/openapi.json"


def _swagger_ui(app: FastAPI) -> None:
    """``/docs`` with Swagger UI's files served from the ``swagger-ui-bundle`` package, not
    a CDN, so it works offline. Public like ``/openapi.json``: no key needed.

    swagger-ui-bundle 1.1 (the latest) ships Swagger UI 4, which refuses ``openapi:
    3.1.0`` ("Unable to render this definition"); FastAPI writes 3.1. For a Swagger UI
    before 5 the page reads ``DOCS_SPEC``, the same description labelled 3.0.3 (which
    Swagger UI 4 renders); ``/openapi.json`` itself is unchanged."""
    from swagger_ui_bundle import swagger_ui_path

    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")
    bundled = re.search(r"(\d+)\.\d+", Path(swagger_ui_path).name)
    relabel = bundled is not None and int(bundled.group(1)) < 5

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")  # behind a proxy, as FastAPI's
        assets = f"{root}{DOCS_ASSETS}"
        return get_swagger_ui_html(
            openapi_url=f"{root}{DOCS_SPEC if relabel else app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon-32x32.png")

    if relabel:
        @app.get(DOCS_SPEC, include_in_schema=False)
        async def docs_spec() -> dict[str, Any]:
            return {**app.openapi(), "openapi": "3.0.3"}


def _f(x: float | None) -> float | None:
    return None if x is None else float(x)


def jsonable_errors(errors: Any) -> list[dict[str, Any]]:
    """pydantic's error list without objects JSON cannot carry (exceptions in ``ctx``)."""
    out = []
    for e in errors:
        item = {k: v for k, v in dict(e).items() if k in ("type", "loc", "msg")}
        item["loc"] = list(item.get("loc", ()))
        out.append(item)
    return out
