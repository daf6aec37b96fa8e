"""Observations in: one at a time or in batches, with idempotency keys."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from lmtwin.service import models as m
from lmtwin.service.deps import ERRORS, IdemKey, Service, Write

router = APIRouter(tags=["ingest"])


@router.post("/twins/{name}/observations", status_code=201, response_model=m.IngestOut,
             responses=ERRORS)
def observe(name: str, body: m.ObservationIn, s: Service, _: Write,
            idempotency_key: IdemKey = None) -> dict[str, Any]:
    return s.ingest(name, [body.model_dump()], idempotency_key)


@router.post("/twins/{name}/observations/batch", status_code=201, response_model=m.IngestOut,
             responses=ERRORS)
def observe_batch(name: str, body: m.BatchIn, s: Service, _: Write,
                  idempotency_key: IdemKey = None) -> dict[str, Any]:
    return s.ingest(name, [o.model_dump() for o in body.observations], idempotency_key)
