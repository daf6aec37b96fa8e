"""What-if: simulate plans from the same state on the same noise and compare them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from lmtwin.errors import InvalidValue, SchemaError
from lmtwin.intervene.plans import (
    MAX_PATHS,
    Objective,
    Plan,
    Starts,
    as_cost,
    check_count,
    check_plan,
    check_starts,
    check_state,
)
from lmtwin.intervene.rollout import Rollout, rollout, uniforms

if TYPE_CHECKING:
    from lmtwin.twin import Twin


def simulate(twin: Twin, state: Starts, plan: Plan, n_paths: int | None = None,
             horizon: int | None = None, seed: int | np.random.Generator | None = None,
             predictors: Sequence[str] | None = None) -> Rollout:
    """Sampled paths along one plan (``Twin.simulate``): ``n_paths`` from one start
    state, or one path per start state (``plans.check_starts``)."""
    with twin._lock:
        starts, n_paths = check_starts(twin.schema, state, n_paths)
        actions, values = check_plan(twin.schema, plan, horizon)
        targets = [v for v in twin.schema.states if v in starts]
        u = uniforms(twin._rng if seed is None else seed, n_paths, len(values), len(targets))
        plans = np.broadcast_to(values, (n_paths, *values.shape)).copy()
        return rollout(twin, starts, actions, plans, u, predictors)


@dataclass
class Outcome:
    """One plan's distribution: paths (n_paths, horizon + 1, S), each path's objective,
    its mean and central interval at ``level``."""

    plan: list[dict[str, float]]
    paths: np.ndarray
    objective: np.ndarray
    mean: float
    lower: float
    upper: float


@dataclass
class Comparison:
    """Plans compared on the same noise. ``beats[a][b]`` is the probability that plan
    ``a``'s objective is lower than ``b``'s on the same sampled path (ties count half)."""

    variables: list[str]
    level: float
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    beats: dict[str, dict[str, float]] = field(default_factory=dict)

    def best(self) -> str:
        """The plan with the lowest mean objective."""
        return min(self.outcomes, key=lambda k: self.outcomes[k].mean)


def compare(twin: Twin, state: Mapping[str, object], plans: Mapping[str, Plan] | Sequence[Plan],
            horizon: int, n_paths: int, objective: Objective,
            seed: int | np.random.Generator | None = None, level: float = 0.9,
            predictors: Sequence[str] | None = None) -> Comparison:
    """Simulate every plan from ``state`` over ``horizon`` steps on the same
    ``n_paths`` noise draws (common random numbers); score each path with ``objective``.

    Plans are named (a mapping) or numbered ("0", "1", ...); each is a list of action
    mappings with at least ``horizon`` steps.
    """
    objective = as_cost(objective)
    named = dict(plans) if isinstance(plans, Mapping) else {
        str(i): p for i, p in enumerate(plans)}
    if not named:
        raise SchemaError("compare needs at least one plan")
    if not 0 < level < 1:
        raise InvalidValue("level", level, "must lie between 0 and 1")
    with twin._lock:
        s = check_state(twin.schema, state)
        n_paths = check_count("n_paths", n_paths, MAX_PATHS)
        checked = {k: check_plan(twin.schema, p, horizon) for k, p in named.items()}
        names = {tuple(a) for a, _ in checked.values()}
        if len(names) > 1:
            raise SchemaError(f"every plan must set the same actions; got {sorted(names)}")
        actions = next(iter(names))
        targets = [v for v in twin.schema.states if v in s]
        objective.check(twin.schema, targets)
        check_count("n_paths x plans", n_paths * len(named), MAX_PATHS)
        u = uniforms(twin._rng if seed is None else seed, n_paths, horizon, len(targets))
        # every plan's paths in one batch, plan by plan, each on the same uniforms
        stacked = np.concatenate([np.broadcast_to(v, (n_paths, *v.shape))
                                  for _, v in checked.values()])
        out = rollout(twin, s, list(actions), stacked, np.tile(u, (len(named), 1, 1)),
                      predictors)
    cost = objective.evaluate(out.variables, out.paths, out.actions, out.plans)
    result = Comparison(out.variables, level)
    tail = (1 - level) / 2
    for i, (name, (acts, values)) in enumerate(checked.items()):
        sl = slice(i * n_paths, (i + 1) * n_paths)
        c = cost[sl]
        result.outcomes[name] = Outcome(
            [{a: float(x) for a, x in zip(acts, row, strict=True)} for row in values],
            out.paths[sl], c, float(c.mean()), float(np.quantile(c, tail)),
            float(np.quantile(c, 1 - tail)))
    for a, oa in result.outcomes.items():
        result.beats[a] = {
            b: float(np.mean((oa.objective < ob.objective)
                             + 0.5 * (oa.objective == ob.objective)))
            for b, ob in result.outcomes.items() if b != a}
    return result
