"""Twins, their schema and knowledge: create, describe, change, archive."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from lmtwin.assimilation import Noise
from lmtwin.schema import Variable
from lmtwin.service import models as m
from lmtwin.service.auth import authenticate
from lmtwin.service.deps import ERRORS, Admin, Read, Service, Write

router = APIRouter(tags=["twins"])


def _f(x: float | None) -> float | None:
    return None if x is None else float(x)


@router.get("/health")
def health(s: Service, request: Request) -> dict[str, Any]:
    mqtt = getattr(request.app.state, "mqtt", None)
    return {"status": "ok", "twins": len(s.names()), "counters": s.counters,
            # a count only: /health is public, twin names and reasons are not
            "unavailable": len(s.unavailable()),
            "mqtt": None if mqtt is None else mqtt.status()}


@router.get("/twins", responses=ERRORS)
def list_twins(s: Service, request: Request) -> list[str]:
    principal = authenticate(request, s.settings, s.db, cache=request.app.state.keys)
    return [n for n in s.names() if principal.allows("read", n)]


@router.post("/twins", status_code=201, response_model=m.TwinOut, responses=ERRORS)
def create_twin(body: m.TwinIn, s: Service, _: Admin) -> dict[str, Any]:
    variables = [Variable(v.name, v.role, v.unit, v.description, _f(v.lower), _f(v.upper))
                 for v in body.variables]
    noise = {v.name: Noise(v.noise.sensor, v.noise.process)
             for v in body.variables if v.noise is not None}
    return s.create(body.name, variables, body.strict, body.level, body.description,
                    body.knowledge, noise)


@router.get("/twins/{name}", response_model=m.TwinOut, responses=ERRORS)
def get_twin(name: str, s: Service, _: Read) -> dict[str, Any]:
    return s.describe(name)


@router.patch("/twins/{name}", response_model=m.TwinOut, responses=ERRORS)
def patch_twin(name: str, body: m.TwinPatch, s: Service, _: Admin) -> dict[str, Any]:
    return s.update(name, body.strict, body.level, body.description)


@router.delete("/twins/{name}", status_code=204, responses=ERRORS)
def delete_twin(name: str, s: Service, _: Admin) -> Response:
    s.archive(name)
    return Response(status_code=204)


@router.get("/twins/{name}/schema", responses=ERRORS)
def get_schema(name: str, s: Service, _: Read, as_of: float | None = None) -> dict[str, Any]:
    return s.schema(name, as_of)


@router.post("/twins/{name}/variables", status_code=201, responses=ERRORS)
def add_variable(name: str, body: m.VariableIn, s: Service, _: Write) -> dict[str, Any]:
    var = Variable(body.name, body.role, body.unit, body.description, _f(body.lower),
                   _f(body.upper))
    noise = Noise(body.noise.sensor, body.noise.process) if body.noise else None
    return s.add_variable(name, var, noise)


@router.patch("/twins/{name}/variables/{variable}", responses=ERRORS)
def patch_variable(name: str, variable: str, body: m.VariablePatch, s: Service,
                   _: Write) -> dict[str, Any]:
    fields = body.model_dump(exclude_unset=True, exclude={"noise", "clear_noise"})
    noise = Noise(body.noise.sensor, body.noise.process) if body.noise else None
    return s.describe_variable(name, variable, fields, noise, body.clear_noise)


@router.delete("/twins/{name}/variables/{variable}", responses=ERRORS)
def remove_variable(name: str, variable: str, s: Service, _: Write) -> dict[str, Any]:
    return s.remove_variable(name, variable)


@router.post("/twins/{name}/knowledge", status_code=201, response_model=m.NoteOut,
             responses=ERRORS)
def add_knowledge(name: str, body: m.KnowledgeIn, s: Service, _: Write) -> dict[str, Any]:
    return s.add_knowledge(name, body.text)


@router.get("/twins/{name}/knowledge", response_model=list[m.NoteOut], responses=ERRORS)
def get_knowledge(name: str, s: Service, _: Read,
                  as_of: float | None = None) -> list[dict[str, Any]]:
    return s.knowledge(name, as_of)
