"""Hedge: combination weights from each predictor's recent errors."""

from __future__ import annotations

import math

from lmtwin.predictors import Hedge


def feed(h: Hedge, errors: dict[str, float], steps: int) -> None:
    for _ in range(steps):
        h.update({"x": 0.0}, {"x": 1.0}, {n: {"x": math.sqrt(e)} for n, e in errors.items()})


def test_a_terrible_predictor_does_not_hide_the_others_differences():
    h = Hedge()
    # persistence 1000x worse than the learner, the language model 18x worse
    feed(h, {"persistence": 1000.0, "numeric": 1.0, "llm": 18.0}, 5)
    w = h.weights(["persistence", "numeric", "llm"])
    assert w["numeric"] > 0.9 and w["llm"] < 0.1 and w["persistence"] < 1e-3


def test_one_blunder_costs_at_most_the_cap():
    h = Hedge(cap=3.0)
    losses = h.update({"x": 0.0}, {"x": 1.0}, {"a": {"x": 1e6}, "b": {"x": 1.0},
                                               "c": {"x": 1.1}})
    assert losses["a"] == 3.0 and 0 < losses["b"] < losses["c"] <= math.log(2) + 1e-9
    feed(h, {"a": 1.0, "b": 4.0, "c": 4.0}, 20)  # then a is best for 20 steps
    assert max(h.weights(["a", "b", "c"]).items(), key=lambda kv: kv[1])[0] == "a"


def test_scale_free_and_abstaining_costs_the_median_loss():
    small, large = Hedge(), Hedge()
    feed(small, {"a": 1e-6, "b": 4e-6}, 3)
    feed(large, {"a": 1e6, "b": 4e6}, 3)
    ws, wl = small.weights(["a", "b"]), large.weights(["a", "b"])
    assert all(math.isclose(ws[n], wl[n], rel_tol=1e-5) for n in ws)
    h = Hedge(discount=1.0)
    feed(h, {"a": 1.0, "b": 1.0}, 1)
    h.update({"x": 0.0}, {"x": 1.0}, {"a": {"x": 1.0}})  # b abstains
    assert math.isclose(h.loss_["b"], 2 * math.log(2), rel_tol=1e-9)
