"""Optimal actions: CMA-ES over action plans on batched rollouts, and receding horizon.

A candidate plan is a point of [0, 1]^(blocks x actions): each action held for ``block``
steps, scaled into its box (the schema's bounds, tightened by the constraints), then
repaired to the rate limit and the dose budget (``Constraints.repair``). A generation's
candidates are rolled out in one batch on the same noise (common random numbers), so
CMA-ES ranks plans, not noise draws. The plan chosen is then scored on fresh noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from lmtwin.errors import DependencyNotInstalled, InvalidValue, NotReady, SchemaError
from lmtwin.intervene.plans import (
    MAX_HORIZON,
    MAX_PATHS,
    Constraints,
    Objective,
    as_cost,
    check_count,
    check_state,
    plan_rows,
)
from lmtwin.intervene.rollout import rollout, uniforms

if TYPE_CHECKING:
    from lmtwin.twin import Twin

MIN_TRANSITIONS = 20


@dataclass
class OptimalPlan:
    """The plan found, its expected objective and central interval at ``level`` (on
    fresh noise), with the paths it was scored on and what the search cost."""

    plan: list[dict[str, float]]
    actions: list[str]
    values: np.ndarray
    expected: float
    lower: float
    upper: float
    level: float
    paths: np.ndarray
    variables: list[str]
    evaluations: int
    path_steps: int


Evaluate = Callable[[np.ndarray, np.ndarray | None], tuple[np.ndarray, np.ndarray]]


def _cma() -> object:
    try:
        import cma
    except ImportError as exc:
        raise DependencyNotInstalled("cma", "intervene") from exc
    return cma


def search(
    evaluate: Evaluate,
    actions: Sequence[str],
    box: np.ndarray,
    horizon: int,
    constraints: Constraints,
    n_paths: int,
    n_targets: int,
    popsize: int = 12,
    iterations: int = 15,
    block: int = 1,
    seed: int = 0,
    previous: Mapping[str, float] | None = None,
    spent: Mapping[str, float] | None = None,
    x0: np.ndarray | None = None,
    noise: bool = True,
) -> tuple[np.ndarray, np.ndarray, int]:
    """CMA-ES over plans with any model: ``evaluate(plans (m, H, A), u)`` returns each
    path's cost and paths for ``m`` plans of ``n_paths`` paths each (plan-major).
    Returns the best plan (H, A), its normalised point and the plans evaluated."""
    cma = _cma()
    n_blocks = math.ceil(horizon / block)
    dims = n_blocks * len(actions)

    def decode(xs: np.ndarray) -> np.ndarray:
        z = np.clip(np.asarray(xs, dtype=float), 0.0, 1.0).reshape(len(xs), n_blocks,
                                                                  len(actions))
        z = np.repeat(z, block, axis=1)[:, :horizon]
        plans = box[:, 0] + z * (box[:, 1] - box[:, 0])
        return constraints.repair(actions, box, plans, previous, spent)

    u = uniforms(seed, n_paths, horizon, n_targets) if noise else None
    start = np.full(dims, 0.5) if x0 is None else np.clip(x0, 0.0, 1.0)
    # CMA-ES as kept in the cma package; bounds handled by its own boundary transform
    es = cma.CMAEvolutionStrategy(  # type: ignore[attr-defined]
        start, 0.3, {"bounds": [0.0, 1.0], "popsize": popsize, "seed": seed + 1,
                     "verbose": -9, "maxiter": iterations})
    # the lower bound (no action) and the warm start compete from the first generation
    best_x = np.zeros(dims)
    best = _mean_cost(evaluate, decode(np.stack([best_x, start])), u, n_paths)
    evaluated = 2
    if best[1] < best[0]:
        best_x = start
    best_cost = float(best.min())
    for _ in range(iterations):
        xs = np.asarray(es.ask())
        costs = _mean_cost(evaluate, decode(xs), u, n_paths)
        evaluated += len(xs)
        es.tell(list(xs), costs.tolist())
        i = int(np.argmin(costs))
        if costs[i] < best_cost:
            best_cost, best_x = float(costs[i]), xs[i]
    return decode(best_x[None])[0], np.clip(best_x, 0.0, 1.0), evaluated


def _mean_cost(evaluate: Evaluate, plans: np.ndarray, u: np.ndarray | None,
               n_paths: int) -> np.ndarray:
    stacked = np.repeat(plans, n_paths, axis=0)
    cost, _ = evaluate(stacked, None if u is None else np.tile(u, (len(plans), 1, 1)))
    return cost.reshape(len(plans), n_paths).mean(axis=1)


def optimise(
    twin: Twin,
    state: Mapping[str, object],
    objective: Objective,
    horizon: int,
    constraints: Constraints | None = None,
    n_paths: int = 16,
    popsize: int = 12,
    iterations: int = 15,
    block: int = 1,
    seed: int = 0,
    level: float = 0.9,
    predictors: Sequence[str] | None = None,
    previous: Mapping[str, float] | None = None,
    spent: Mapping[str, float] | None = None,
    x0: np.ndarray | None = None,
) -> tuple[OptimalPlan, np.ndarray]:
    """The plan of every action variable over ``horizon`` steps that minimises the
    expected ``objective`` on the twin, within the schema's bounds and ``constraints``.
    Returns the plan and its normalised point (a warm start for the next search)."""
    constraints = constraints or Constraints()
    objective = as_cost(objective)
    horizon = check_count("horizon", horizon, MAX_HORIZON)
    n_paths = check_count("n_paths", n_paths, MAX_PATHS)
    popsize = check_count("popsize", popsize, 1000)
    iterations = check_count("iterations", iterations, 10_000)
    block = check_count("block", block, horizon)
    check_count("n_paths x popsize", n_paths * popsize, MAX_PATHS)
    if not 0 < level < 1:
        raise InvalidValue("level", level, "must lie between 0 and 1")
    with twin._lock:
        schema = twin.schema
        s = check_state(schema, state)
        actions = list(schema.actions)
        if not actions:
            raise SchemaError("the twin has no action variables to optimise")
        targets = [v for v in schema.states if v in s]
        objective.check(schema, targets)
        box = constraints.box(schema, actions)
        if len(twin.retriever) < MIN_TRANSITIONS:
            raise NotReady(f"the twin holds {len(twin.retriever)} transitions; planning "
                           f"needs at least {MIN_TRANSITIONS}")

        def evaluate(plans: np.ndarray, u: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
            out = rollout(twin, s, actions, plans, u, predictors)
            return objective.evaluate(out.variables, out.paths, actions, plans), out.paths

        values, point, evaluated = search(
            evaluate, actions, box, horizon, constraints, n_paths, len(targets), popsize,
            iterations, block, seed, previous, spent, x0)
        # scored on fresh noise, more paths: the search's own draws flatter its choice
        final = max(n_paths, 64)
        u = uniforms(seed + 7919, final, horizon, len(targets))
        plans = np.broadcast_to(values, (final, *values.shape)).copy()
        out = rollout(twin, s, actions, plans, u, predictors)
    cost = objective.evaluate(out.variables, out.paths, actions, plans)
    tail = (1 - level) / 2
    result = OptimalPlan(
        plan_rows(actions, values), actions, values, float(cost.mean()),
        float(np.quantile(cost, tail)), float(np.quantile(cost, 1 - tail)), level, out.paths,
        out.variables, evaluated, (evaluated * n_paths + final) * horizon)
    return result, point


class MPC:
    """Receding-horizon control: at each observation, re-plan over ``horizon`` steps
    (warm-started from the last plan) and apply the first action(s).

    Args:
        twin: the twin whose rollouts plan (or any twin-shaped model through
            ``optimise``'s arguments).
        objective, horizon, constraints: as ``optimise``; a budget in ``constraints``
            holds for the whole run (what was applied is subtracted).
        replan_every: steps applied from each plan before re-planning.
        options: passed to ``optimise`` (n_paths, popsize, iterations, block, seed, ...).
    """

    def __init__(self, twin: Twin, objective: Objective, horizon: int,
                 constraints: Constraints | None = None, replan_every: int = 1,
                 **options: object) -> None:
        self.twin = twin
        self.objective = objective
        self.horizon = check_count("horizon", horizon, MAX_HORIZON)
        self.replan_every = check_count("replan_every", replan_every, self.horizon)
        self.constraints = constraints or Constraints()
        self.options = options
        self.spent: dict[str, float] = {}
        self.last: dict[str, float] | None = None
        self.plan_: OptimalPlan | None = None
        self._point: np.ndarray | None = None
        self._step = 0

    def act(self, state: Mapping[str, object]) -> dict[str, float]:
        """The action to apply now, given the state just observed."""
        if self.plan_ is None or self._step >= self.replan_every:
            self.plan_, self._point = optimise(
                self.twin, state, self.objective, self.horizon, self.constraints,
                previous=self.last, spent=self.spent, x0=self._shifted(),
                **self.options)  # type: ignore[arg-type]
            self._step = 0
        action = dict(self.plan_.plan[self._step])
        self._step += 1
        for name, value in action.items():
            self.spent[name] = self.spent.get(name, 0.0) + value
        self.last = action
        return action

    def _shifted(self) -> np.ndarray | None:
        """The last plan's point moved forward by the steps applied (a warm start)."""
        if self._point is None or self.plan_ is None:
            return None
        block = int(self.options.get("block", 1))  # type: ignore[call-overload]
        n_actions = len(self.plan_.actions)
        z = self._point.reshape(-1, n_actions)
        shift = self._step // block
        return np.concatenate([z[shift:], np.repeat(z[-1:], shift, axis=0)]).ravel()
