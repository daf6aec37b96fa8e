"""One APIRouter per route group; ``create_app`` includes every router in ``ROUTERS``.

Adding a route group: write ``routes/<group>.py`` with a module-level ``router =
APIRouter(tags=["<group>"])`` (dependencies from ``lmtwin.service.deps``), then add one
line below.
"""

from fastapi import APIRouter

from lmtwin.service.routes import (
    agent,
    alerts,
    ingest,
    intervene,
    keys,
    live,
    model,
    read,
    registry,
)

ROUTERS: list[APIRouter] = [
    registry.router,
    ingest.router,
    read.router,
    model.router,
    live.router,
    keys.router,
    alerts.router,
    intervene.router,
    agent.router,
]
