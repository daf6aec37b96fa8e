"""What the twin holds: history, latest state (fused), and how its predictions went."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from lmtwin.service import models as m
from lmtwin.service.deps import ERRORS, Read, Service

router = APIRouter(tags=["read"])


@router.get("/twins/{name}/history", response_model=list[m.ObservationOut], responses=ERRORS)
def history(name: str, s: Service, _: Read, variable: str | None = None,
            episode: str | None = None, t_from: float | None = None,
            t_to: float | None = None, as_of: float | None = None,
            limit: Annotated[int, Query(ge=1, le=100_000)] = 1000) -> list[dict[str, Any]]:
    return s.history(name, variable, episode, t_from, t_to, as_of, limit)


@router.get("/twins/{name}/state", responses=ERRORS)
async def state(name: str, s: Service, _: Read, episode: str = "default",
                as_of: float | None = None) -> dict[str, Any]:
    # the latest state is served from memory on the event loop: no thread hop
    view = None if as_of is not None else s.cached_state(name, episode)
    if view is not None:
        return view
    return await run_in_threadpool(s.state, name, episode, as_of)


@router.get("/twins/{name}/performance", responses=ERRORS)
def performance(name: str, s: Service, _: Read,
                last: Annotated[int, Query(ge=1, le=10_000)] = 200) -> dict[str, Any]:
    return s.performance(name, last)
