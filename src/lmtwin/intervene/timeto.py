"""Time to threshold: when a state variable first crosses a value, as a distribution."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from lmtwin.errors import InvalidValue, SchemaError
from lmtwin.intervene.plans import (
    MAX_PATHS,
    Plan,
    check_count,
    check_number,
    check_plan,
    check_state,
)
from lmtwin.intervene.rollout import rollout, uniforms

if TYPE_CHECKING:
    from lmtwin.twin import Twin


@dataclass
class TimeTo:
    """First crossing of ``threshold`` by ``variable``, in steps from now, per sampled
    path (``inf``: not within the horizon). ``median`` and the central interval
    [``lower``, ``upper``] at ``level`` may be ``inf``; ``probability`` is the chance
    of crossing within ``horizon`` steps."""

    variable: str
    threshold: float
    direction: str
    horizon: int
    times: np.ndarray
    median: float
    lower: float
    upper: float
    probability: float
    level: float


def crossing_times(x: np.ndarray, threshold: float, direction: str) -> np.ndarray:
    """First index t >= 1 of each row of ``x`` (n, horizon + 1) at or beyond
    ``threshold`` (``up``: >=, ``down``: <=); ``inf`` where none."""
    hit = x[:, 1:] >= threshold if direction == "up" else x[:, 1:] <= threshold
    first = np.argmax(hit, axis=1) + 1.0
    return np.where(hit.any(axis=1), first, np.inf)


def summarise(times: np.ndarray, level: float) -> tuple[float, float, float, float]:
    """Median, lower, upper (empirical quantiles, no interpolation, so ``inf`` is a
    valid answer) and the probability of a finite crossing."""
    tail = (1 - level) / 2
    q = np.quantile(times, [0.5, tail, 1 - tail], method="inverted_cdf")
    return float(q[0]), float(q[1]), float(q[2]), float(np.isfinite(times).mean())


def time_to(twin: Twin, variable: str, threshold: object, plan: Plan, horizon: int,
            state: Mapping[str, object], n_paths: int = 500,
            seed: int | np.random.Generator | None = None, level: float = 0.9,
            predictors: Sequence[str] | None = None) -> TimeTo:
    """The distribution of the first time ``variable`` crosses ``threshold`` along
    ``plan``, from ``state``; the direction is away from the current value."""
    thr = check_number("threshold", threshold)
    if not 0 < level < 1:
        raise InvalidValue("level", level, "must lie between 0 and 1")
    with twin._lock:
        var = twin.schema[variable]  # UnknownVariable
        if var.role != "state":
            raise SchemaError(f"{variable!r} is a {var.role} variable; a threshold needs a "
                              "state variable the twin predicts")
        s = check_state(twin.schema, state)
        if variable not in s:
            raise SchemaError(f"the state gives no value of {variable!r}")
        if s[variable] == thr:
            raise InvalidValue("threshold", thr, f"{variable} is already at the threshold")
        direction = "up" if s[variable] < thr else "down"
        actions, values = check_plan(twin.schema, plan, horizon)
        n_paths = check_count("n_paths", n_paths, MAX_PATHS)
        targets = [v for v in twin.schema.states if v in s]
        u = uniforms(twin._rng if seed is None else seed, n_paths, len(values), len(targets))
        plans = np.broadcast_to(values, (n_paths, *values.shape)).copy()
        out = rollout(twin, s, actions, plans, u, predictors)
    times = crossing_times(out.paths[:, :, out.variables.index(variable)], thr, direction)
    median, lower, upper, prob = summarise(times, level)
    return TimeTo(variable, thr, direction, len(values), times, median, lower, upper, prob,
                  level)
