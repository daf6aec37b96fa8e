"""Plans, objectives and constraints, validated against the twin's schema.

A plan is one mapping of action values per step; every step names the same actions. An
action outside its bounds is refused with the bound named, never clipped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np

from lmtwin.errors import InvalidValue, NotReady, SchemaError, UnknownVariable
from lmtwin.schema import Schema

MAX_HORIZON = 1000
MAX_PATHS = 100_000

Plan = Sequence[Mapping[str, object]]


def check_count(name: str, value: object, cap: int) -> int:
    """A whole number in 1..cap, or InvalidValue."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidValue(name, value, "must be a whole number")
    if not 1 <= int(value) <= cap:
        raise InvalidValue(name, value, f"must lie in 1..{cap}")
    return int(value)


def check_number(name: str, value: object) -> float:
    """A finite number, or InvalidValue."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidValue(name, value, f"expected a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidValue(name, value, "not a finite number")
    return number


def check_state(schema: Schema, state: Mapping[str, object]) -> dict[str, float]:
    """State and context values (validated); actions belong in the plan."""
    clean = schema.validate(state, strict=True)
    actions = [k for k in clean if schema[k].role == "action"]
    if actions:
        raise SchemaError(f"{actions} are actions: give them in the plan, not the state")
    if not any(schema[k].role == "state" for k in clean):
        raise NotReady("nothing to roll forward: the state has no state variable")
    return clean


Starts = Mapping[str, object] | Sequence[Mapping[str, object]]


def check_starts(schema: Schema, state: Starts,
                 n_paths: int | None = None) -> tuple[dict[str, np.ndarray], int]:
    """The start state of every path: each state or context variable's values, shape
    (n,), and the number of paths n.

    ``state`` is one start state for every path (a mapping of numbers; ``n_paths``, by
    default 1, says how many), or one per path: a list of mappings naming the same
    variables, or a mapping of 1-d arrays of one length (a number there applies to every
    path), e.g. a cohort or a filter's state samples. ``n_paths``, if given with them,
    must equal their number.

    Raises UnknownVariable, SchemaError (an action in the state, paths naming different
    variables, not a mapping or list) or InvalidValue (the path and variable named: not
    a finite number, outside a bound, arrays not 1-d or of different lengths, a count
    that does not match); NotReady if no state variable is given.
    """
    if isinstance(state, Mapping):
        if all(np.ndim(cast(Any, v)) == 0 for v in state.values()):  # one for every path
            n = 1 if n_paths is None else check_count("n_paths", n_paths, MAX_PATHS)
            return {k: np.full(n, v) for k, v in check_state(schema, state).items()}, n
        columns: dict[str, Any] = {str(k): v for k, v in state.items()}
    elif isinstance(state, Sequence) and not isinstance(state, (str, bytes)):
        if not len(state) or not all(isinstance(s, Mapping) for s in state):
            raise SchemaError("start states per path are a non-empty list of mappings")
        names = [str(k) for k in state[0]]
        for i, s in enumerate(state):
            if sorted(map(str, s)) != sorted(names):
                raise SchemaError(f"start state {i} names {sorted(map(str, s))}; every path "
                                  f"must name {sorted(names)}")
        columns = {k: [s[k] for s in state] for k in names}
    else:
        raise SchemaError("a start state is a mapping of values, or one mapping per path")
    # names and roles first (UnknownVariable before any value's error), as check_state
    roles = {k: schema[k].role for k in columns}
    actions = [k for k, r in roles.items() if r == "action"]
    if actions:
        raise SchemaError(f"{actions} are actions: give them in the plan, not the state")
    if "state" not in roles.values():
        raise NotReady("nothing to roll forward: the state has no state variable")
    shapes = {k: np.shape(v) for k, v in columns.items() if np.ndim(v) != 0}
    for name, shape in shapes.items():
        if len(shape) != 1:
            raise InvalidValue(name, shape, "start values per path are 1-d")
    lengths = sorted({shape[0] for shape in shapes.values()})
    if len(lengths) != 1:
        raise InvalidValue("state", lengths, "per-path start values of different lengths")
    n = check_count("n_paths", lengths[0], MAX_PATHS)
    if n_paths is not None and check_count("n_paths", n_paths, MAX_PATHS) != n:
        raise InvalidValue("n_paths", n_paths, f"must equal the number of start states ({n})")
    out = {}
    for name, v in columns.items():
        raw = np.asarray(v)
        listed = v if isinstance(v, (list, tuple)) else []
        # a bool, a string, None are not values (numpy would read True in a list as 1.0)
        if raw.dtype.kind not in "iuf" or any(isinstance(e, (bool, np.bool_)) for e in listed):
            raise InvalidValue(name, v, "expected numbers")
        values = np.broadcast_to(raw.astype(float), (n,)).copy()
        var = schema[name]
        bad, reason = ~np.isfinite(values), "not a finite number"
        if not bad.any() and var.lower is not None:
            bad, reason = values < var.lower, f"below the lower bound {var.lower}"
        if not bad.any() and var.upper is not None:
            bad, reason = values > var.upper, f"above the upper bound {var.upper}"
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InvalidValue(name, float(values[i]), f"start state of path {i}: {reason}")
        out[name] = values
    return out, n


def check_plan(schema: Schema, plan: Plan, horizon: int | None = None) -> tuple[list[str],
                                                                                np.ndarray]:
    """The plan's action names and its values, shape (horizon, n_actions).

    Raises UnknownVariable (a name the twin lacks), SchemaError (not an action, steps
    naming different actions, a plan shorter than the horizon) or InvalidValue (not a
    finite number, outside the action's bounds: the bound is named).
    """
    if isinstance(plan, (str, bytes, Mapping)) or not isinstance(plan, Sequence):
        raise SchemaError("a plan is a list of action mappings, one per step")
    horizon = len(plan) if horizon is None else horizon
    horizon = check_count("horizon", horizon, MAX_HORIZON)
    if len(plan) < horizon:
        raise SchemaError(f"the plan has {len(plan)} steps; the horizon needs {horizon}")
    names: list[str] | None = None
    rows = []
    for step, values in enumerate(plan[:horizon]):
        if not isinstance(values, Mapping):
            raise SchemaError(f"plan step {step} is not a mapping of action values")
        for name in values:
            if name not in schema:
                raise UnknownVariable(str(name), list(schema.variables))
            if schema[str(name)].role != "action":
                raise SchemaError(f"plan step {step} sets {name!r}, which is a "
                                  f"{schema[str(name)].role} variable, not an action")
        keys = sorted(str(k) for k in values)
        if names is None:
            names = keys
        elif keys != names:
            raise SchemaError(f"plan step {step} sets {keys}; every step must set {names}")
        rows.append([schema.check_value(n, values[n]) for n in keys])
    return names or [], np.asarray(rows, dtype=float).reshape(horizon, len(names or []))


def plan_rows(names: list[str], values: np.ndarray) -> list[dict[str, float]]:
    """An array plan (horizon, n_actions) as one mapping per step."""
    return [{n: float(v) for n, v in zip(names, row, strict=True)} for row in values]


@dataclass(frozen=True)
class Objective:
    """A cost to minimise, per sampled path.

    For each state variable in ``weights``: its value over steps 1..horizon (or its
    squared distance to ``setpoints[name]`` when given), aggregated by ``aggregate``
    (``mean`` over steps, ``sum``, or the ``final`` value), times the weight; plus, for
    each action in ``action_costs``, the cost per unit times the plan's total.

    Example: ``Objective({"v": 1.0}, action_costs={"ca": 2.0})``: mean tumour volume
    plus 2 per unit of chemo.
    """

    weights: Mapping[str, float]
    setpoints: Mapping[str, float] = field(default_factory=dict)
    action_costs: Mapping[str, float] = field(default_factory=dict)
    aggregate: Literal["mean", "sum", "final"] = "mean"

    def check(self, schema: Schema, rolled: Sequence[str]) -> None:
        """Refuse names the twin lacks, roles that do not fit, non-finite numbers."""
        if not isinstance(self.weights, Mapping) or not self.weights:
            raise SchemaError("an objective needs at least one weighted state variable")
        if self.aggregate not in ("mean", "sum", "final"):
            raise SchemaError(f"aggregate must be mean, sum or final, not {self.aggregate!r}")
        for part, role in ((self.weights, "state"), (self.setpoints, "state"),
                           (self.action_costs, "action")):
            for name, value in part.items():
                var = schema[str(name)]  # UnknownVariable
                if var.role != role:
                    raise SchemaError(f"the objective uses {name!r} as a {role} variable; "
                                      f"it is a {var.role} variable")
                check_number(str(name), value)
        missing = [n for n in list(self.weights) + list(self.setpoints) if n not in rolled]
        if missing:
            raise SchemaError(f"the objective needs {missing}, which the state does not give")

    def evaluate(self, variables: Sequence[str], paths: np.ndarray, actions: Sequence[str],
                 plans: np.ndarray) -> np.ndarray:
        """Cost of each path: ``paths`` (n, horizon + 1, S), ``plans`` (n, horizon, A)."""
        cost = np.zeros(len(paths))
        for name, w in self.weights.items():
            x = paths[:, 1:, list(variables).index(name)]
            if name in self.setpoints:
                x = (x - self.setpoints[name]) ** 2
            agg = {"mean": x.mean(axis=1), "sum": x.sum(axis=1), "final": x[:, -1]}
            cost += w * agg[self.aggregate]
        for name, c in self.action_costs.items():
            if name in actions:
                cost += c * plans[:, :, list(actions).index(name)].sum(axis=1)
        return cost


def as_cost(objective: Any) -> Objective:
    """The cost to minimise: an ``Objective``, or any objective offering ``as_cost()``
    (``lmtwin.cooperate.Objective``: one object for plans and for the agents' rewards)."""
    convert = getattr(objective, "as_cost", None)
    cost = convert() if callable(convert) else objective
    if not (callable(getattr(cost, "check", None)) and callable(getattr(cost, "evaluate", None))):
        raise SchemaError(f"an objective must be lmtwin.intervene.Objective or offer as_cost(); "
                          f"got {type(objective).__name__}")
    return cost


@dataclass(frozen=True)
class Constraints:
    """Limits on an optimised plan beyond the schema's bounds.

    ``bounds``: tighter (lower, upper) per action, inside the schema's bounds;
    ``budget``: the most of each action over the plan (a dose budget);
    ``rate``: the most an action may change from one step to the next (a rate limit).
    """

    bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    budget: Mapping[str, float] = field(default_factory=dict)
    rate: Mapping[str, float] = field(default_factory=dict)

    def box(self, schema: Schema, actions: Sequence[str]) -> np.ndarray:
        """(A, 2) lower and upper bound of each action; refuses a bound outside the
        schema's (naming it), unknown or non-action names, and unbounded actions."""
        for part in (self.bounds, self.budget, self.rate):
            for name in part:
                var = schema[str(name)]
                if var.role != "action":
                    raise SchemaError(f"constraint on {name!r}, which is not an action")
        out = np.empty((len(actions), 2))
        for i, name in enumerate(actions):
            var = schema[name]
            lo, hi = var.lower, var.upper
            if name in self.bounds:
                pair = self.bounds[name]
                if not isinstance(pair, Sequence) or len(pair) != 2:
                    raise InvalidValue(name, pair, "bounds are a (lower, upper) pair")
                ulo, uhi = (check_number(name, v) for v in pair)
                if lo is not None and ulo < lo:
                    raise InvalidValue(name, ulo, f"below the schema's lower bound {lo}")
                if hi is not None and uhi > hi:
                    raise InvalidValue(name, uhi, f"above the schema's upper bound {hi}")
                if ulo > uhi:
                    raise InvalidValue(name, pair, "lower bound above upper bound")
                lo, hi = ulo, uhi
            if lo is None or hi is None:
                raise SchemaError(f"optimising {name!r} needs a lower and an upper bound "
                                  "(in the schema or the constraints)")
            out[i] = lo, hi
        for name, value in self.budget.items():
            if check_number(name, value) < 0:
                raise InvalidValue(name, value, "a budget cannot be negative")
        for name, value in self.rate.items():
            if check_number(name, value) <= 0:
                raise InvalidValue(name, value, "a rate limit must be positive")
        return out

    def repair(self, actions: Sequence[str], box: np.ndarray, plans: np.ndarray,
               previous: Mapping[str, float] | None = None,
               spent: Mapping[str, float] | None = None) -> np.ndarray:
        """Feasible plans (n, horizon, A) nearest ``plans``: clipped to the box, each
        step within ``rate`` of the one before (``previous``: the action last applied),
        then scaled towards the lower bound until the total fits the budget left after
        ``spent``. Scaling keeps the box and the rate limit between the plan's steps (not
        to ``previous``, which only a plan starting at the lower bound always keeps)."""
        out = np.clip(plans, box[:, 0], box[:, 1])
        for i, name in enumerate(actions):
            r = self.rate.get(name)
            if r is not None:
                prev = None if previous is None else previous.get(name)
                for t in range(out.shape[1]):
                    ref = prev if t == 0 else out[:, t - 1, i]
                    if ref is not None:
                        out[:, t, i] = np.clip(out[:, t, i], np.asarray(ref) - r,
                                               np.asarray(ref) + r)
            b = self.budget.get(name)
            if b is not None:
                left = b - (0.0 if spent is None else spent.get(name, 0.0))
                lo = box[i, 0]
                floor = lo * out.shape[1]
                if left < floor - 1e-9:
                    raise InvalidValue(name, b, f"the budget left ({left:g}) is below the "
                                       f"lower bound times the horizon ({floor:g})")
                above = (out[:, :, i] - lo).sum(axis=1)
                scale = np.where(above > left - floor, (left - floor) / np.maximum(above, 1e-12),
                                 1.0)
                out[:, :, i] = lo + (out[:, :, i] - lo) * scale[:, None]
        return out
