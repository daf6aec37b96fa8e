"""One objective for plans and agents: a cooperative ``Objective`` (O = w_p P + w_a A +
w_c C) drives the intervene stage's what-if and optimiser, scored on the true tank."""

from __future__ import annotations

import numpy as np
import pytest

from lmtwin import LocalRidge, Persistence, Twin
from lmtwin.cooperate import Objective, cost, level
from lmtwin.errors import LmtwinError
from lmtwin.systems.tank import TANK_VARIABLES, tank_step


@pytest.fixture(scope="module")
def tank() -> Twin:
    rng = np.random.default_rng(0)
    twin = Twin("tank", TANK_VARIABLES, predictors=[Persistence(), LocalRidge()])
    for episode in range(8):
        x, valve = float(rng.uniform(0, 40)), 0.0
        for t in range(50):
            if t % 5 == 0:
                valve = float(rng.uniform(0, 1))
            twin.observe({"level": x, "valve": valve}, episode=f"r{episode}", t=float(t))
            x = float(tank_step(x, valve, noise=0.3, rng=rng))
    return twin


def test_the_same_objective_plans_and_rewards(tank: Twin) -> None:
    hold = Objective([level("level", target=30.0, scale=10.0, power=2),
                      cost({"valve": 0.05})], weights=(1.0, 1.0, 1.0))
    plans = {"shut": [{"valve": 0.0}] * 15, "open": [{"valve": 0.8}] * 15}
    whatif = tank.compare({"level": 10.0}, plans, horizon=15, n_paths=50, objective=hold)
    assert whatif.best() == "open" and whatif.beats["open"]["shut"] > 0.9
    best = tank.optimise({"level": 10.0}, hold, horizon=15, n_paths=4, popsize=8,
                         iterations=6, block=3, seed=0)
    # scored on the true tank by the same objective's trajectory (higher is better)
    from lmtwin.cooperate.objective import Step

    def true_value(plan: list[dict[str, float]]) -> float:
        x, steps, totals = 10.0, [], {"valve": 0.0}
        for h, a in enumerate(plan):
            nxt = float(tank_step(x, a["valve"]))
            totals["valve"] += a["valve"]
            steps.append(Step({"level": x}, a, {"level": nxt}, h, dict(totals)))
            x = nxt
        return hold.trajectory(steps)

    assert true_value(best.plan) > true_value(plans["shut"])
    assert true_value(best.plan) > true_value(plans["open"]) - 1.0


def test_an_objective_on_an_unknown_variable_is_refused(tank: Twin) -> None:
    bad = Objective([level("pressure")])
    with pytest.raises(LmtwinError):
        tank.optimise({"level": 10.0}, bad, horizon=5, n_paths=2, popsize=4, iterations=2)
