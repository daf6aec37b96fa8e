from __future__ import annotations

import numpy as np

from lmtwin.predictors import Query, check_predictor
from lmtwin.predictors.ridge_cv import RidgeCV
from lmtwin.predictors.simple import Batch
from lmtwin.schema import Schema, Variable
from lmtwin.types import Transition


def _data(n: int = 40, noise: float = 0.5, seed: int = 0) -> list[Transition]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        x, y, u = rng.normal(size=3)
        dx = 0.8 * y - 0.3 * x + noise * rng.normal()
        out.append(Transition("e", float(i), {"x": x, "y": y}, {"u": u},
                              {"x": x + dx, "y": y + 0.1 * u}))
    return out


def _query(x: float = 0.5, y: float = -1.0, u: float = 0.2) -> Query:
    schema = Schema([Variable("x"), Variable("y"), Variable("u", "action")])
    return Query({"x": x, "y": y}, {"u": u}, ["x", "y"], schema)


def test_ridge_cv_answers_the_contract_and_shrinks_more_when_noise_grows() -> None:
    p = RidgeCV()
    check_predictor(p, _data(), _query())
    clean = p.predict(_query(), _data(noise=0.01)).info["alpha"]
    noisy = p.predict(_query(), _data(n=12, noise=5.0)).info["alpha"]
    assert clean < noisy
    # nearly noiseless: the fitted change is the true one
    out = p.predict(_query(), _data(noise=0.001)).mean
    assert abs(out[0] - (0.5 + 0.8 * -1.0 - 0.3 * 0.5)) < 0.05


def test_ridge_cv_batch_equals_one_query_at_a_time() -> None:
    data = _data()
    names = ["x", "y", "a:u"]
    X = np.array([[t.state["x"], t.state["y"], t.action["u"]] for t in data])
    D = np.array([[t.delta("x"), t.delta("y")] for t in data])
    queries = [_query(0.1 * i, -0.2 * i, 0.3) for i in range(4)]
    inputs = np.array([[q.state["x"], q.state["y"], q.action["u"]] for q in queries])
    current = inputs[:, :2]
    ex_in = np.repeat(X[None], 4, axis=0)
    ex_in[0, :5] = np.nan  # missing values are left out, as one at a time
    batch = Batch(names, ["x", "y"], inputs, current, ex_in, np.repeat(D[None], 4, axis=0))
    mean, ok = RidgeCV().predict_batch(batch)
    assert ok.all()
    for i, q in enumerate(queries):
        rows = data[5:] if i == 0 else data
        assert np.allclose(mean[i], RidgeCV().predict(q, rows).mean)
