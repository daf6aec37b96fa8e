"""API keys: create (the secret is shown once), list, revoke."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request, Response

from lmtwin.service import models as m
from lmtwin.service.auth import new_key
from lmtwin.service.deps import ERRORS, Admin, Service
from lmtwin.service.errors import KeyNotFound

log = logging.getLogger("lmtwin.service")
router = APIRouter(tags=["keys"])


@router.post("/keys", status_code=201, response_model=m.KeyOut, responses=ERRORS)
def create_key(body: m.KeyIn, s: Service, _: Admin) -> dict[str, Any]:
    key_id, secret, digest = new_key()
    scopes: list[str] = sorted(set(body.scopes))
    created = s.db.add_key(key_id, body.name, digest, body.twins, scopes)
    log.info("API key %s (%s) created", key_id, body.name)
    return {"id": key_id, "name": body.name, "twins": body.twins, "scopes": scopes,
            "created_at": created, "key": secret}


@router.get("/keys", response_model=list[m.KeyOut], responses=ERRORS)
def list_keys(s: Service, _: Admin) -> list[dict[str, Any]]:
    return s.db.keys()


@router.delete("/keys/{key_id}", status_code=204, responses=ERRORS)
def revoke_key(key_id: str, s: Service, request: Request, _: Admin) -> Response:
    if not s.db.revoke_key(key_id):
        raise KeyNotFound(key_id)
    request.app.state.keys.clear()
    closed = s.events.close_owner(key_id)  # its live streams end now
    log.info("API key %s revoked (%d live streams closed)", key_id, closed)
    return Response(status_code=204)
