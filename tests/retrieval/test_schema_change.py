"""Retrieval after a schema change (issue 12): examples that carry the query's variables
come first, so a variable added half-way is used at once."""

import math

import numpy as np

from lmtwin import LocalRidge, Persistence, Twin, Variable
from lmtwin.retrieval import RawEncoder, Retriever
from lmtwin.schema import Schema
from lmtwin.types import Transition

DT = 0.05


def swing(theta, omega, steps):
    out = []
    for _ in range(steps):
        out.append((theta, omega))
        theta, omega = theta + DT * omega, omega - DT * (9.81 * math.sin(theta) + 0.1 * omega)
    return out


def test_search_prefers_examples_that_carry_every_query_variable():
    r = Retriever(RawEncoder(), k=8)
    for i in range(500):  # before the change: x only, some right at the query
        r.add(Transition("old", i, {"x": 0.5 + 1e-4 * i}, {}, {"x": 0.5}))
    for i in range(5):  # after: x and z, farther away in x
        r.add(Transition("new", i, {"x": 2.0 + i, "z": 1.0}, {}, {"x": 2.0, "z": 1.0}))
    schema = Schema([Variable("x"), Variable("z")])
    near = r.search({"x": 0.5, "z": 1.0}, {}, schema)
    assert [t.episode for t in near[-5:]] == ["new"] * 5  # complete ones nearest
    assert len(near) == 8  # topped up with the nearest of the rest
    near = r.search({"x": 0.5}, {}, schema)  # a query without z: every example carries x
    assert all(t.episode == "old" for t in near)
    ids = r.search_batch({"s:x": np.array([0.5, 3.0]), "s:z": np.array([1.0, 1.0])}, 2,
                         schema, 3)
    assert [r.transitions[i].episode for i in ids[1]] == ["new"] * 3
    assert r.transitions[ids[1][0]].state["x"] == 3.0


def test_variable_added_half_way_is_used_at_once():
    rng = np.random.default_rng(0)
    twin = Twin("pendulum", variables=[Variable("theta", "state", "rad", "angle")],
                predictors=[Persistence(), LocalRidge()])
    for e in range(20):  # first half: only the angle is observed
        for t, (th, _) in enumerate(swing(rng.uniform(-1.5, 1.5), rng.uniform(-1, 1), 50)):
            twin.observe({"theta": th}, episode=f"a{e}", t=float(t))
    twin.add_variable(Variable("omega", "state", "rad/s", "angular velocity"))
    fell_back = 0
    local_err, global_err = [], []
    xs, ys = [], []
    for e in range(12):  # second half: the angular velocity too
        path = swing(rng.uniform(-1.5, 1.5), rng.uniform(-1, 1), 40)
        th0, om0 = path[0]
        for t, (th, om) in enumerate(path):
            if t > 0:
                p = twin.predict({"theta": th0, "omega": om0})
                if "numeric" not in p.by_predictor:
                    fell_back += 1
                elif len(xs) >= 200:  # compared once both learners have some data
                    local_err.append((p.by_predictor["numeric"]["omega"] - om) ** 2)
                    # a global ridge on every complete transition so far
                    X = np.column_stack([np.ones(len(xs)), np.array(xs)])
                    coef = np.linalg.lstsq(X, np.array(ys), rcond=None)[0]
                    pred = om0 + np.array([1.0, th0, om0]) @ coef
                    global_err.append((pred - om) ** 2)
                xs.append((th0, om0))
                ys.append(om - om0)
            twin.observe({"theta": th, "omega": om}, episode=f"b{e}", t=float(t))
            th0, om0 = th, om
    # the numeric learner answers from the third complete example on (it needs 3)
    assert fell_back <= 3, fell_back
    # the local learner on the new variable: several times better than a global ridge
    assert np.median(local_err) < 0.3 * np.median(global_err)
