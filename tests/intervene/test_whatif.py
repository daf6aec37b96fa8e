"""What-if: plans compared on the same noise, with the probability one beats another."""

import numpy as np
import pytest

from lmtwin.intervene import Objective
from tests.intervene.test_rollout import _twin


@pytest.fixture(scope="module")
def twin():
    return _twin()


def test_compare_gives_distributions_and_paired_win_probabilities(twin):
    plans = {"rest": [{"u": 0.0}] * 6, "push": [{"u": 1.0}] + [{"u": 0.0}] * 5,
             "hold": [{"u": 0.3}] * 6}
    goal = Objective({"x": 1.0}, setpoints={"x": 3.0})  # mean squared distance to 3
    out = twin.compare({"x": 5.0}, plans, horizon=6, n_paths=200, objective=goal, seed=1)
    assert set(out.outcomes) == set(plans)
    for o in out.outcomes.values():
        assert o.paths.shape == (200, 7, 1) and o.objective.shape == (200,)
        assert o.lower <= o.mean <= o.upper
    # from 5 towards 3: resting gets there, a push moves away
    assert out.best() == "rest"
    assert out.beats["rest"]["push"] > 0.95
    for a in plans:
        for b in plans:
            if a != b:
                assert out.beats[a][b] + out.beats[b][a] == pytest.approx(1.0)
    # the same seed, the same answer (common random numbers)
    again = twin.compare({"x": 5.0}, plans, horizon=6, n_paths=200, objective=goal, seed=1)
    assert np.array_equal(again.outcomes["push"].objective, out.outcomes["push"].objective)


def test_compare_ranks_plans_as_the_true_system_does(twin):
    goal = Objective({"x": 1.0}, setpoints={"x": 4.0}, action_costs={"u": 0.1})
    levels = [0.0, 0.2, 0.4, 0.6, 0.8]
    plans = {str(u): [{"u": u}] * 8 for u in levels}
    out = twin.compare({"x": 4.0}, plans, horizon=8, n_paths=100, objective=goal, seed=0)

    def truth(u):
        x, cost = 4.0, 0.0
        for _ in range(8):
            x = 0.9 * x + u
            cost += (x - 4.0) ** 2 / 8
        return cost + 0.1 * 8 * u

    best_true = min(levels, key=truth)
    assert out.best() == str(best_true)
