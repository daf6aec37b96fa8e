"""The local ridge: the change or the relative change per target, chosen by its weighted
leave-one-out error, and a wider fit where its nearest examples do not span the query."""

from __future__ import annotations

import numpy as np
import pytest

from lmtwin import LocalRidge, Persistence, Twin, Variable
from lmtwin.predictors import Query, check_predictor
from lmtwin.predictors.simple import Batch
from lmtwin.schema import Schema
from lmtwin.types import Observation, Transition


def _growth(n: int = 64, seed: int = 0) -> list[Transition]:
    """A population x whose growth rate falls with the dose u and with a second species
    y (x' = x (1 + 0.3 - 0.1 u - 0.05 y)); y' = y + 0.5 u, additive."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        x, y, u = rng.uniform(10, 1000), rng.uniform(0, 4), rng.uniform(0, 3)
        out.append(Transition("e", float(i), {"x": x, "y": y}, {"u": u},
                              {"x": x * (1.3 - 0.1 * u - 0.05 * y), "y": y + 0.5 * u}))
    return out


def _query(x: float, y: float, u: float) -> Query:
    schema = Schema([Variable("x", lower=0), Variable("y", lower=0),
                     Variable("u", "action", lower=0)])
    return Query({"x": x, "y": y}, {"u": u}, ["x", "y"], schema)


def test_a_growth_rate_is_fitted_as_a_relative_change() -> None:
    data = _growth()
    p = LocalRidge(k=64)
    check_predictor(p, data, _query(500.0, 2.0, 1.0))
    q = _query(800.0, 1.0, 2.5)
    got = p.predict(q, data).mean
    want = np.array([800.0 * (1.3 - 0.25 - 0.05), 1.0 + 1.25])
    # the relative change is linear in the inputs: fitted but for the small penalty
    np.testing.assert_allclose(got, want, rtol=1e-4)
    # the change itself is not (x times u): the best linear fit of it errs by far more
    X = np.array([[1, t.state["x"], t.state["y"], t.action["u"]] for t in data])
    dx = np.array([t.next_state["x"] - t.state["x"] for t in data])
    coef = np.linalg.lstsq(X, dx, rcond=None)[0]
    linear = 800.0 + np.array([1, 800.0, 1.0, 2.5]) @ coef
    assert abs(linear - want[0]) > 1000 * abs(got[0] - want[0])


def test_a_target_that_crosses_zero_keeps_the_change() -> None:
    rng = np.random.default_rng(1)
    data = []
    for i in range(50):
        x, u = rng.normal(), rng.normal()
        data.append(Transition("e", float(i), {"x": x}, {"u": u}, {"x": 0.9 * x + u}))
    q = Query({"x": 0.3}, {"u": -0.2}, ["x"])
    assert LocalRidge().predict(q, data).mean[0] == pytest.approx(0.9 * 0.3 - 0.2, abs=1e-3)


def test_off_the_value_every_example_shares_the_widest_fit_answers() -> None:
    """All examples had y = 2: the fit knows nothing of y's effect, so a query at y = 2.3
    is answered as at y = 2 (no slope along y), in the single path, the batch and a
    twin fed by ``observe_many`` (declining left persistence alone to answer)."""
    data = [Transition(t.episode, t.t, {"x": t.state["x"], "y": 2.0}, t.action,
                       {"x": t.state["x"] * (1.2 - 0.1 * t.action["u"]), "y": 2.0})
            for t in _growth()]
    p = LocalRidge()
    at_2 = p.predict(_query(400.0, 2.0, 1.0), data).mean
    assert at_2[0] == pytest.approx(400.0 * 1.1, rel=1e-6)
    np.testing.assert_allclose(p.predict(_query(400.0, 2.3, 1.0), data).mean,
                               [at_2[0], 2.3], rtol=1e-6)
    twin = Twin("t", variables=[Variable("x", lower=0), Variable("y", lower=0),
                                Variable("u", "action", lower=0)],
                predictors=[Persistence(), LocalRidge()])
    # each example its own episode of two observations: the user's bulk path
    twin.observe_many([o for i, t in enumerate(data) for o in (
        Observation(f"e{i}", 0.0, {**t.state, **t.action}),
        Observation(f"e{i}", 1.0, dict(t.next_state)))])
    pred = twin.predict({"x": 400.0, "y": 2.3}, {"u": 1.0})
    assert pred.by_predictor["numeric"]["x"] == pytest.approx(400.0 * 1.1, rel=1e-6)


def test_a_query_off_its_nearest_shared_value_is_refitted_on_more() -> None:
    """The 100 nearest examples all had y = 2 (nearest last, as the twin passes them);
    farther ones vary y: the fit widens to 128 (past 4k = 64: a tumour with a residual
    drug level whose 64 nearest had none, chemo validation seed 0) and answers, in both
    paths alike."""
    rng = np.random.default_rng(3)
    data = []
    for i in range(160):
        x, u = rng.uniform(100, 900), rng.uniform(0, 3)
        y = 2.0 if i >= 60 else rng.uniform(0, 4)
        data.append(Transition("e", float(i), {"x": x, "y": y}, {"u": u},
                               {"x": x * (1.3 - 0.1 * u - 0.05 * y), "y": y + 0.5 * u}))
    p = LocalRidge(k=16)
    assert p.reach == 128
    q = _query(500.0, 2.3, 1.0)
    got = p.predict(q, data).mean
    np.testing.assert_allclose(got, [500.0 * (1.3 - 0.1 - 0.115), 2.3 + 0.5], rtol=1e-3)
    cols = np.array([[t.state["x"], t.state["y"], t.action["u"]] for t in reversed(data)])
    deltas = np.array([[t.next_state["x"] - t.state["x"], t.next_state["y"] - t.state["y"]]
                       for t in reversed(data)])
    # features order: states sorted, then actions: x, y, a:u
    batch = Batch(["x", "y", "a:u"], ["x", "y"], np.array([[500.0, 2.3, 1.0]]),
                  np.array([[500.0, 2.3]]), cols[None], deltas[None])
    mean, ok = p.predict_batch(batch)
    assert ok[0]
    np.testing.assert_allclose(mean[0], got, rtol=1e-9)


def test_bad_queries_get_not_ready_with_the_reason() -> None:
    """A query missing a target's current value, or no examples at all: a typed
    NotReady saying what is missing, never a guess."""
    from lmtwin.errors import NotReady

    p = LocalRidge()
    with pytest.raises(NotReady, match="current value"):
        p.predict(Query({"x": 1.0}, {}, ["x", "w"]), [])
    with pytest.raises(NotReady, match="no examples"):
        p.predict(_query(1.0, 1.0, 1.0), [])


def test_a_query_off_a_value_its_reach_shares_fetches_more_in_every_path() -> None:
    """Past ``reach``: 600 stored transitions near the query all have y = 2, 150 farther
    ones vary y (an online cancer twin: its new rows pushed the few tumours with a
    residual drug level past the 128 nearest). The learner fetches up to ``far`` and
    predicts y's effect; the twin's single prediction and the batched retrieval path
    (rollouts, bulk scoring, the bench) agree; without fetching, the effect is lost."""
    from lmtwin.predictors.batch import retrieve_batch

    rng = np.random.default_rng(5)

    def step(x: float, y: float, u: float) -> dict[str, float]:
        return {"x": x * (1.3 - 0.1 * u - 0.05 * y), "y": y + 0.5 * u}

    obs = []
    for i in range(750):
        near = i < 600
        x = rng.uniform(495, 505) if near else rng.uniform(100, 900)
        y = 2.0 if near else rng.uniform(0, 4)
        u = rng.uniform(0.9, 1.1) if near else rng.uniform(0, 3)
        obs += [Observation(f"e{i}", 0.0, {"x": x, "y": y, "u": u}),
                Observation(f"e{i}", 1.0, step(x, y, u))]
    twin = Twin("t", variables=[Variable("x", lower=0), Variable("y", lower=0),
                                Variable("u", "action", lower=0)],
                predictors=[Persistence(), LocalRidge(k=16)])
    twin.observe_many(obs)
    truth = step(500.0, 2.3, 1.0)
    single = twin.predict({"x": 500.0, "y": 2.3}, {"u": 1.0}).by_predictor["numeric"]
    assert single["x"] == pytest.approx(truth["x"], abs=0.1)  # y's effect: 7.5
    cols = {"s:x": np.array([500.0]), "s:y": np.array([2.3]), "a:u": np.array([1.0])}
    p = twin.predictors[1]
    batch = retrieve_batch(twin.retriever, twin.schema, cols, ["x", "y", "a:u"], ["x", "y"],
                           np.array([[500.0, 2.3]]), p.reach)
    assert (batch.ex_inputs[0, :, 1] == 2.0).all()  # its reach shares y = 2
    mean, ok = p.predict_batch(batch)
    assert ok[0]
    np.testing.assert_allclose(mean[0], [single["x"], single["y"]], rtol=1e-9)
    import dataclasses

    alone, _ = p.predict_batch(dataclasses.replace(batch, more=None))
    assert abs(alone[0, 0] - truth["x"]) > 1.0  # 0.05 * 0.3 * 500 = 7.5 missed
