"""The twin as a model: next-step predictions and simulated paths under a plan."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from lmtwin.service import models as m
from lmtwin.service.deps import ERRORS, Meter, Service
from lmtwin.service.errors import Forbidden

router = APIRouter(tags=["model"])


@router.post("/twins/{name}/predict", response_model=m.PredictionOut, responses=ERRORS)
def predict(name: str, body: m.PredictIn, s: Service, meter: Meter) -> dict[str, Any]:
    """Only a key that may write to the twin may have a prediction scored: scoring
    changes the combination weights and intervals, and reading must not. Costs one
    path-step (one call to every predictor)."""
    meter.charge(1)
    may_write = meter.principal.allows("write", name)
    if body.score and not may_write:
        raise Forbidden("a scored prediction changes what the twin learns: it needs the "
                        "'write' scope (send score: false for a look-ahead)")
    score = may_write if body.score is None else body.score
    return s.predict(name, body.state, body.action, body.episode, score)


@router.post("/twins/{name}/simulate", response_model=m.SimulationOut, responses=ERRORS)
def simulate(name: str, body: m.SimulateIn, s: Service, meter: Meter) -> dict[str, Any]:
    meter.charge(body.n_paths * (body.horizon or len(body.plan)))
    return s.simulate(name, body.state, body.plan, body.n_paths, body.horizon, body.episode)
