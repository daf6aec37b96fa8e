"""Hedge: combination weights from each predictor's recent normalised squared errors."""

from __future__ import annotations

import math

import numpy as np

from lmtwin.predictors import Hedge


def feed(h: Hedge, errors: dict[str, float], steps: int, scale: float = 1.0) -> None:
    """Each predictor off by sqrt(error) typical steps; every value times ``scale``."""
    for _ in range(steps):
        h.update({"x": 0.0}, {"x": scale},
                 {n: {"x": scale * math.sqrt(e)} for n, e in errors.items()})


def test_a_terrible_predictor_does_not_hide_the_others_differences():
    h = Hedge()
    feed(h, {"persistence": 1000.0, "numeric": 0.01, "llm": 0.18}, 5)
    w = h.weights(["persistence", "numeric", "llm"])
    assert w["numeric"] > 0.99 and w["persistence"] < 1e-6


def test_one_blunder_costs_at_most_the_cap():
    h = Hedge(cap=100.0)
    losses = h.update({"x": 0.0}, {"x": 1.0}, {"a": {"x": 1e200}, "b": {"x": 0.1},
                                               "c": {"x": 0.2}})
    assert losses["a"] == 100.0 and 0 < losses["b"] < losses["c"]
    feed(h, {"a": 0.01, "b": 0.04, "c": 0.04}, 200)  # then a is best: it recovers
    assert max(h.weights(["a", "b", "c"]).items(), key=lambda kv: kv[1])[0] == "a"


def test_weights_are_scale_free():
    small, large = Hedge(), Hedge()
    feed(small, {"a": 0.01, "b": 0.012}, 10, scale=1e-6)
    feed(large, {"a": 0.01, "b": 0.012}, 10, scale=1e6)
    ws, wl = small.weights(["a", "b"]), large.weights(["a", "b"])
    assert all(math.isclose(ws[n], wl[n], rel_tol=1e-6) for n in ws)
    assert 0.5 < ws["a"] < 0.9  # close predictors share the weight


def test_values_at_the_float_limit_give_the_capped_loss():
    h = Hedge()
    losses = h.update({"x": 1.7e308}, {"x": -1.7e308}, {"a": {"x": -1.7e308}, "b": {"x": 0.0}})
    assert all(math.isfinite(v) for v in losses.values())
    assert all(np.isfinite(list(h.weights(["a", "b"]).values())))


def test_a_sampled_predictor_is_judged_on_the_steps_it_shares():
    """The costly predictor is asked on every 20th step only, which here are easy ones;
    on those very steps it is 3x the cheap one's error. Its own-steps record is lower
    than the cheap one's (which includes the hard steps), yet it must get no weight."""
    hedge = Hedge()
    for i in range(400):
        scale = 10.0 if i % 10 == 9 else 1.0  # every 10th step is hard for everyone
        forecasts = {"cheap": {"x": i + 0.1 * scale}}
        if i % 20 == 0:
            forecasts["costly"] = {"x": i + 0.3 * scale}
        hedge.update({"x": float(i)}, {"x": i - 1.0}, forecasts)
    assert hedge.loss_["costly"] < hedge.loss_["cheap"]  # unpaired, it would look better
    paired = hedge.paired_loss(["cheap", "costly"])
    assert paired["costly"] > 1.5 * paired["cheap"]
    assert hedge.weights(["cheap", "costly"])["costly"] < 0.05
