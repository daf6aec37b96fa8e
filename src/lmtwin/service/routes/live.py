"""Live views: the Server-Sent Events stream of a twin, and its dashboard page."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from lmtwin.service.auth import ADMIN
from lmtwin.service.core import TwinService
from lmtwin.service.dashboard import dashboard_page
from lmtwin.service.deps import ERRORS, ReadQuery, Service
from lmtwin.service.events import CLOSE

router = APIRouter(tags=["live"])


@router.get("/twins/{name}/events", responses=ERRORS, response_class=StreamingResponse)
async def events(name: str, request: Request, principal: ReadQuery,
                 episode: str = "default") -> StreamingResponse:
    """Server-Sent Events of the twin; the stream ends (event ``closed``) when the key
    that opened it is revoked: at once through this service, and by the next ping
    (``sse_ping_s``) when another process sharing the database revoked it."""
    s: TwinService = request.app.state.service
    first = await run_in_threadpool(s.state, name, episode)
    queue = s.events.subscribe(name, principal.id)

    async def stream() -> AsyncIterator[str]:
        try:
            hello = json.dumps({"states": {episode: first}})
            yield f"retry: 2000\nevent: state\ndata: {hello}\n\n"
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), s.settings.sse_ping_s)
                except TimeoutError:
                    if principal.id != ADMIN.id and not await run_in_threadpool(
                            s.db.key_active, principal.id):
                        message = CLOSE
                    else:
                        yield ": ping\n\n"
                        continue
                if message == CLOSE:
                    yield 'event: closed\ndata: {"reason": "key revoked"}\n\n'
                    return
                yield message
        finally:
            s.events.unsubscribe(name, queue)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/twins/{name}/dashboard", response_class=HTMLResponse, responses=ERRORS)
def dashboard(name: str, s: Service, _: ReadQuery) -> HTMLResponse:
    """The page, with a Content-Security-Policy that runs only its own script (a nonce
    per response), connects only to this origin, and forbids framing (clickjacking)."""
    s.entry(name)
    nonce = secrets.token_urlsafe(16)
    policy = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; "
              "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
              "form-action 'none'; frame-ancestors 'none'")
    return HTMLResponse(dashboard_page(name, nonce), headers={
        "Content-Security-Policy": policy, "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer"})  # the page's URL may carry a key
