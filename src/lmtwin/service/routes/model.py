"""The twin as a model: next-step predictions and simulated paths under a plan."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from lmtwin.service import models as m
from lmtwin.service.deps import ERRORS, Meter, Read, Service

router = APIRouter(tags=["model"])


@router.post("/twins/{name}/predict", response_model=m.PredictionOut, responses=ERRORS)
def predict(name: str, body: m.PredictIn, s: Service, _: Read) -> dict[str, Any]:
    return s.predict(name, body.state, body.action, body.episode, body.score)


@router.post("/twins/{name}/simulate", response_model=m.SimulationOut, responses=ERRORS)
def simulate(name: str, body: m.SimulateIn, s: Service, meter: Meter) -> dict[str, Any]:
    meter.charge(body.n_paths * (body.horizon or len(body.plan)))
    return s.simulate(name, body.state, body.plan, body.n_paths, body.horizon, body.episode)
