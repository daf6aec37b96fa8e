"""Optimal actions: CMA-ES within bounds and constraints, scored on the true system."""

import numpy as np
import pytest

from lmtwin.errors import InvalidValue
from lmtwin.intervene import Constraints, Objective
from tests.intervene.test_rollout import _twin

GOAL = Objective({"x": 1.0}, setpoints={"x": 4.0})
FAST = {"n_paths": 6, "popsize": 8, "iterations": 8}


@pytest.fixture(scope="module")
def twin():
    return _twin()


def true_path(x, plan):
    out = []
    for step in plan:
        x = 0.9 * x + step["u"]
        out.append(x)
    return np.array(out)


def test_optimise_finds_a_plan_that_works_on_the_true_system(twin):
    best = twin.optimise({"x": 2.0}, GOAL, horizon=8, seed=0, **FAST)
    assert len(best.plan) == 8 and all(0.0 <= s["u"] <= 2.0 for s in best.plan)
    assert best.lower <= best.expected <= best.upper
    # scored on the true system, it beats doing nothing and pushing flat out
    cost = np.mean((true_path(2.0, best.plan) - 4.0) ** 2)
    assert cost < np.mean((true_path(2.0, [{"u": 0.0}] * 8) - 4.0) ** 2) / 3
    assert cost < np.mean((true_path(2.0, [{"u": 2.0}] * 8) - 4.0) ** 2) / 3


def test_optimise_keeps_the_budget_and_the_rate_limit(twin):
    limits = Constraints(budget={"u": 1.0}, rate={"u": 0.2})
    best = twin.optimise({"x": 2.0}, GOAL, horizon=8, constraints=limits, seed=0, **FAST)
    u = np.array([s["u"] for s in best.plan])
    assert u.sum() <= 1.0 + 1e-9
    assert np.all(np.abs(np.diff(u)) <= 0.2 + 1e-9)


def test_bounds_beyond_the_schema_are_refused_with_the_bound_named(twin):
    with pytest.raises(InvalidValue, match="upper bound 2"):
        twin.optimise({"x": 2.0}, GOAL, horizon=4, constraints=Constraints(bounds={"u": (0, 3)}),
                      **FAST)


def test_mpc_holds_the_true_system_near_its_setpoint(twin):
    controller = twin.mpc(GOAL, horizon=5, replan_every=2, seed=0, **FAST)
    x = 1.0
    for _ in range(12):
        u = controller.act({"x": x})["u"]
        x = 0.9 * x + u
    assert abs(x - 4.0) < 0.6
