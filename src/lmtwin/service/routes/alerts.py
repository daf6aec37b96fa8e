"""Alerts: the anomaly and drift alerts each twin's ``Monitor`` raises as observations
arrive (also pushed as ``alert`` events on the twin's SSE stream), and their
acknowledgement. Both are append-only records in the twin's store."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from lmtwin.intervene.alerts import AlertAcknowledged, AlertNotFound, acknowledge, alerts
from lmtwin.service.deps import ERRORS, Read, Service, Write
from lmtwin.service.errors import Conflict, NotFound

router = APIRouter(tags=["alerts"])


class AckOut(BaseModel):
    at: float
    by: str
    note: str


class AlertOut(BaseModel):
    id: int
    at: float = Field(description="wall-clock time the alert was stored (Unix seconds)")
    kind: Literal["anomaly", "drift"]
    variable: str
    episode: str
    t: float = Field(description="the time of the reading judged")
    actual: float
    predicted: float
    sigma: float
    p_value: float
    martingale: float
    level: float = Field(description="alpha for an anomaly, the CUSUM threshold for drift")
    acknowledged: AckOut | None = None


class AckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Annotated[str, Field(max_length=1000)] = ""


@router.get("/twins/{name}/alerts", response_model=list[AlertOut], responses=ERRORS)
def list_alerts(name: str, s: Service, _: Read,
                after: Annotated[int, Query(ge=0, description="only alerts with a larger id")] = 0,
                limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
                unacknowledged: bool = False) -> list[dict[str, Any]]:
    """The twin's alerts, oldest first, each with its acknowledgement (if any)."""
    entry = s.entry(name)
    found = alerts(entry.twin.store, name, after, None if unacknowledged else limit)
    if unacknowledged:
        found = [a for a in found if a.acknowledged is None][:limit]
    return [a.to_dict() for a in found]


@router.post("/twins/{name}/alerts/{alert_id}/ack", response_model=AlertOut, responses=ERRORS)
def ack(name: str, alert_id: Annotated[int, Path(ge=1)], s: Service, principal: Write,
        body: AckIn | None = None) -> dict[str, Any]:
    """Acknowledge an alert once (recorded with the key that did it); 404 for an unknown
    alert, 409 for one already acknowledged."""
    entry = s.entry(name)
    with entry.lock:
        try:
            alert = acknowledge(entry.twin.store, name, alert_id, principal.id,
                                body.note if body else "")
        except AlertNotFound as exc:
            raise NotFound(str(exc)) from exc
        except AlertAcknowledged as exc:
            raise Conflict(str(exc)) from exc
    return alert.to_dict()
