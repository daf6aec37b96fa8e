"""Time to threshold: the distribution of the first crossing, against the truth."""

import math

import numpy as np
import pytest

from lmtwin.intervene.timeto import crossing_times, summarise
from tests.intervene.test_rollout import _twin


@pytest.fixture(scope="module")
def twin():
    return _twin()


def test_crossing_times_and_summary():
    x = np.array([[0.0, 1.0, 3.0, 5.0], [0.0, 0.5, 0.2, 0.1], [0.0, 2.0, 1.0, 2.5]])
    t = crossing_times(x, 2.0, "up")
    assert t[0] == 2 and math.isinf(t[1]) and t[2] == 1
    assert crossing_times(-x, -2.0, "down").tolist() == t.tolist()
    median, lo, hi, p = summarise(t, 0.9)
    assert median == 2 and lo == 1 and math.isinf(hi) and p == pytest.approx(2 / 3)


def test_time_to_matches_the_true_crossing(twin):
    # truth from 2 with u = 1: x_t = 10 - 8 * 0.9^t crosses 5 at t = 5
    out = twin.time_to("x", 5.0, [{"u": 1.0}] * 12, horizon=12, state={"x": 2.0},
                       n_paths=300, seed=0)
    assert out.direction == "up" and out.probability > 0.95
    assert out.lower <= 5 <= out.upper and abs(out.median - 5) <= 1
    never = twin.time_to("x", 5.0, [{"u": 0.0}] * 12, horizon=12, state={"x": 2.0},
                         n_paths=300, seed=0)
    assert never.probability < 0.05 and math.isinf(never.median)
    down = twin.time_to("x", 3.0, [{"u": 0.0}] * 12, horizon=12, state={"x": 5.0},
                        n_paths=300, seed=0)  # 5 * 0.9^t <= 3 from t = 5
    assert down.direction == "down" and abs(down.median - 5) <= 1
