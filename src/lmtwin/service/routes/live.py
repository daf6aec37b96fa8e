"""Live views: the Server-Sent Events stream of a twin, and its dashboard page."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from lmtwin.service.core import TwinService
from lmtwin.service.dashboard import dashboard_page
from lmtwin.service.deps import ERRORS, ReadQuery, Service

router = APIRouter(tags=["live"])


@router.get("/twins/{name}/events", responses=ERRORS, response_class=StreamingResponse)
async def events(name: str, request: Request, _: ReadQuery,
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
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/twins/{name}/dashboard", response_class=HTMLResponse, responses=ERRORS)
def dashboard(name: str, s: Service, _: ReadQuery) -> str:
    s.entry(name)
    return dashboard_page(name)
