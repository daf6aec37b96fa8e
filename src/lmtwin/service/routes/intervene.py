"""Intervene: what-if comparisons, optimal plans and time to threshold, each a thin
wrapper over ``lmtwin.intervene``. Every route charges its path-steps to the caller's cost
budget before the work (413 beyond the per-request cap, 429 when the budget is spent)."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from lmtwin.intervene import Constraints, Objective
from lmtwin.intervene.optimise import optimise as optimise_plan
from lmtwin.service.deps import ERRORS, Meter, Service
from lmtwin.service.ops.base import jsonable

router = APIRouter(tags=["intervene"])

Values = dict[Annotated[str, Field(max_length=64)], float]
Plan = Annotated[list[Values], Field(min_length=1, max_length=1000)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ObjectiveIn(Strict):
    minimise: Annotated[Values, Field(min_length=1, description=(
        "weight of each state variable's mean (or sum, or final value) over the horizon"))]
    setpoints: Values = Field(default_factory=dict, description=(
        "minimise the squared distance to these values instead"))
    action_costs: Values = Field(default_factory=dict, description="cost per unit of action")
    aggregate: Literal["mean", "sum", "final"] = "mean"

    def build(self) -> Objective:
        return Objective(self.minimise, self.setpoints, self.action_costs, self.aggregate)


class Start(Strict):
    state: Values | None = Field(None, description="default: the episode's latest state")
    episode: Annotated[str, Field(min_length=1, max_length=200)] = "default"
    seed: Annotated[int, Field(ge=0)] = 0


class WhatIfIn(Start):
    plans: Annotated[dict[Annotated[str, Field(max_length=64)], Plan],
                     Field(min_length=1, max_length=20)]
    objective: ObjectiveIn
    horizon: Annotated[int, Field(ge=1)] | None = None
    n_paths: Annotated[int, Field(ge=1, le=2000)] = 200


class ConstraintsIn(Strict):
    bounds: dict[str, tuple[float, float]] = Field(default_factory=dict)
    budget: Values = Field(default_factory=dict)
    rate: Values = Field(default_factory=dict)


class OptimiseIn(Start):
    objective: ObjectiveIn
    horizon: Annotated[int, Field(ge=1)]
    constraints: ConstraintsIn = Field(default_factory=ConstraintsIn)
    n_paths: Annotated[int, Field(ge=1, le=64)] = 8
    popsize: Annotated[int, Field(ge=2, le=32)] = 10
    iterations: Annotated[int, Field(ge=1, le=50)] = 10
    block: Annotated[int, Field(ge=1)] = 1


class TimeToIn(Start):
    variable: Annotated[str, Field(max_length=64)]
    threshold: float
    plan: Plan
    horizon: Annotated[int, Field(ge=1)] | None = None
    n_paths: Annotated[int, Field(ge=1, le=5000)] = 500


class Bands(BaseModel):
    lower: dict[str, list[float]]
    median: dict[str, list[float]]
    upper: dict[str, list[float]]


class OutcomeOut(BaseModel):
    mean: float
    lower: float
    upper: float
    paths: Bands


class WhatIfOut(BaseModel):
    variables: list[str]
    horizon: int
    n_paths: int
    level: float
    plans: dict[str, OutcomeOut]
    beats: dict[str, dict[str, float]] = Field(description=(
        "beats[a][b]: probability that plan a's objective is lower than b's on the same "
        "sampled path (ties count half)"))


class OptimiseOut(BaseModel):
    plan: list[dict[str, float]]
    expected: float
    lower: float
    upper: float
    level: float
    paths: Bands
    evaluations: int
    path_steps: int


class TimeToOut(BaseModel):
    variable: str
    threshold: float
    direction: Literal["up", "down"]
    horizon: int
    median: float | None = Field(description="steps; null: not within the horizon")
    lower: float | None
    upper: float | None
    probability: float
    level: float
    counts: list[int] = Field(description="paths first crossing at step 1..horizon")


def _state(s: Any, name: str, body: Start) -> dict[str, Any]:
    if body.state is not None:
        return dict(body.state)
    return dict(s._current(s.entry(name), body.episode))


def _bands(variables: list[str], paths: np.ndarray, level: float) -> dict[str, Any]:
    q = np.quantile(paths, [(1 - level) / 2, 0.5, (1 + level) / 2], axis=0)
    return {k: {v: q[i, :, j] for j, v in enumerate(variables)}
            for i, k in enumerate(("lower", "median", "upper"))}


def _steps(x: float) -> float | None:
    return x if math.isfinite(x) else None


@router.post("/twins/{name}/whatif", response_model=WhatIfOut, responses=ERRORS)
def whatif(name: str, body: WhatIfIn, s: Service, meter: Meter) -> dict[str, Any]:
    """Simulate each plan from the same state on the same noise; each plan's objective
    distribution and path bands, and the probability each plan beats each other one."""
    horizon = body.horizon or min(len(p) for p in body.plans.values())
    meter.charge(len(body.plans) * body.n_paths * horizon)
    twin = s.entry(name).twin
    out = twin.compare(_state(s, name, body), body.plans, horizon, body.n_paths,
                       body.objective.build(), seed=body.seed, level=twin.level)
    return jsonable({
        "variables": out.variables, "horizon": horizon, "n_paths": body.n_paths,
        "level": out.level, "beats": out.beats,
        "plans": {k: {"mean": o.mean, "lower": o.lower, "upper": o.upper,
                      "paths": _bands(out.variables, o.paths, out.level)}
                  for k, o in out.outcomes.items()}})


@router.post("/twins/{name}/optimise", response_model=OptimiseOut, responses=ERRORS)
def optimise(name: str, body: OptimiseIn, s: Service, meter: Meter) -> dict[str, Any]:
    """The plan of every action that minimises the expected objective (CMA-ES on the
    twin's rollouts), within the schema's bounds and the constraints."""
    final = max(body.n_paths, 64)
    meter.charge(((body.popsize * body.iterations + 2) * body.n_paths + final) * body.horizon)
    twin = s.entry(name).twin
    c = body.constraints
    best, _ = optimise_plan(
        twin, _state(s, name, body), body.objective.build(), body.horizon,
        Constraints(c.bounds, c.budget, c.rate), n_paths=body.n_paths, popsize=body.popsize,
        iterations=body.iterations, block=min(body.block, body.horizon), seed=body.seed,
        level=twin.level)
    return jsonable({
        "plan": best.plan, "expected": best.expected, "lower": best.lower,
        "upper": best.upper, "level": best.level, "evaluations": best.evaluations,
        "path_steps": best.path_steps, "paths": _bands(best.variables, best.paths, best.level)})


@router.post("/twins/{name}/time-to", response_model=TimeToOut, responses=ERRORS)
def time_to(name: str, body: TimeToIn, s: Service, meter: Meter) -> dict[str, Any]:
    """When ``variable`` first crosses ``threshold`` along the plan: median, interval and
    the probability of crossing within the horizon."""
    horizon = body.horizon or len(body.plan)
    meter.charge(body.n_paths * horizon)
    twin = s.entry(name).twin
    est = twin.time_to(body.variable, body.threshold, body.plan, horizon,
                       _state(s, name, body), body.n_paths, body.seed, level=twin.level)
    finite = est.times[np.isfinite(est.times)].astype(int)
    return jsonable({
        "variable": est.variable, "threshold": est.threshold, "direction": est.direction,
        "horizon": est.horizon, "median": _steps(est.median), "lower": _steps(est.lower),
        "upper": _steps(est.upper), "probability": est.probability, "level": est.level,
        "counts": np.bincount(finite, minlength=est.horizon + 1)[1:].tolist()})
