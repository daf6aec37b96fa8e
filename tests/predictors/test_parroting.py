from __future__ import annotations

import numpy as np
import pytest

from lmtwin import Persistence, Twin, Variable
from lmtwin.errors import InvalidValue, NotReady
from lmtwin.predictors import Parroting, Query, check_predictor
from lmtwin.predictors.batch import retrieve_batch
from lmtwin.predictors.simple import features
from lmtwin.schema import Schema
from lmtwin.types import Transition
from tests.conftest import feed_linear

SCHEMA = Schema([Variable("x"), Variable("u", "action")])


def _tr(x: float, dx: float, u: float = 0.0, t: float = 0.0) -> Transition:
    return Transition("e", t, {"x": x}, {"u": u}, {"x": x + dx})


def _query(x: float = 1.0, u: float = 0.0) -> Query:
    return Query({"x": x}, {"u": u}, ["x"], SCHEMA)


def test_parroting_copies_what_followed_the_nearest_and_averages_its_matches() -> None:
    # Retriever.search order: nearest last
    examples = [_tr(5.0, -4.0), _tr(1.3, 0.4), _tr(1.1, 0.2)]
    assert Parroting().predict(_query(), examples).mean == pytest.approx([1.2])
    assert Parroting(matches=2).predict(_query(), examples).mean == pytest.approx([1.3])
    out = Parroting(matches=5).predict(_query(), examples)
    assert out.mean == pytest.approx([1.0 + (0.2 + 0.4 - 4.0) / 3])
    assert out.info["matches"] == 3
    check_predictor(Parroting(), examples, _query())


def test_parroting_skips_incomplete_examples_and_refuses_what_it_cannot_answer() -> None:
    partial = Transition("e", 0.0, {"x": 1.0}, {}, {"x": 9.0})  # no action: not a match
    no_next = Transition("e", 1.0, {"x": 1.0}, {"u": 0.0}, {})
    examples = [_tr(3.0, 1.0), partial, no_next]
    assert Parroting().predict(_query(), examples).mean == pytest.approx([2.0])
    with pytest.raises(NotReady):
        Parroting().predict(_query(), [partial, no_next])
    with pytest.raises(NotReady):
        Parroting().predict(Query({}, {"u": 0.0}, ["x"], SCHEMA), [_tr(1.0, 1.0)])
    # a query without the action matches on the state alone, as the local learners do
    assert Parroting().predict(Query({"x": 1.0}, {}, ["x"], SCHEMA),
                               [partial]).mean == pytest.approx([9.0])
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(InvalidValue):
            Parroting(matches=bad)  # type: ignore[arg-type]


def test_parroting_batch_equals_one_query_at_a_time_on_a_twin_retriever() -> None:
    twin = Twin("p", [Variable("x"), Variable("u", "action")], predictors=[Persistence()])
    feed_linear(twin, 40)
    xs, us = np.array([0.3, 1.7, 2.2, 4.0]), np.array([0.0, 0.5, 0.0, 0.5])
    for matches in (1, 3):
        p = Parroting(matches)
        q0 = _query(float(xs[0]), float(us[0]))
        batch = retrieve_batch(twin.retriever, twin.schema, {"s:x": xs, "a:u": us},
                               features(q0), ["x"], xs[:, None], p.k)
        # one missing value among the first query's nearest: skipped by both paths
        batch.ex_inputs[0, 0, 0] = np.nan
        batch.complete = False
        mean, ok = p.predict_batch(batch)
        assert ok.all()
        for i in range(len(xs)):
            q = _query(float(xs[i]), float(us[i]))
            examples = twin.retriever.search(q.state, q.action, twin.schema, k=p.k)
            if i == 0:
                nearest = examples[-1]
                examples = [*examples[:-1], Transition(nearest.episode, nearest.t, {},
                                                       nearest.action, nearest.next_state)]
            assert mean[i] == pytest.approx(p.predict(q, examples).mean)
    empty = retrieve_batch(twin.retriever, twin.schema, {"s:x": xs, "a:u": us}, ["x", "a:u"],
                           ["x"], xs[:, None], 0)
    mean, ok = Parroting().predict_batch(empty)
    assert not ok.any() and np.array_equal(mean, xs[:, None])


def test_a_twin_with_parroting_in_its_pool_weighs_and_uses_it() -> None:
    twin = Twin("p", [Variable("x"), Variable("u", "action")],
                predictors=[Persistence(), Parroting()])
    feed_linear(twin, 40, predict=True)
    pred = twin.predict({"x": 1.0}, {"u": 0.5})
    # x' = 0.9 x + u: the stream's first transition is this very context
    assert pred.by_predictor["parroting"]["x"] == pytest.approx(1.4)
    assert pred.weights["parroting"] > pred.weights["persistence"]
