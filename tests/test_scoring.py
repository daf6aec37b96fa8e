"""Prequential scoring (issue 12): weights and intervals learnt from history whatever path
the data took, and the silent wrong answers of observe/observe_many."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lmtwin import InvalidValue, LocalRidge, Persistence, SchemaError, Twin
from lmtwin.predictors import Hedge
from lmtwin.store import SQLiteStore
from lmtwin.systems.cancer import CANCER_VARIABLES, simulate_patients
from lmtwin.types import Observation
from tests.conftest import feed_linear


def cancer_twin(store=None, n: int = 60, seed: int = 0) -> Twin:
    twin = Twin("cancer", CANCER_VARIABLES, store=store,
                predictors=[Persistence(), LocalRidge()])
    obs = [
        Observation(f"p{i}", float(t), row)
        for i, patient in enumerate(simulate_patients(n, seed=seed, steps=40))
        for t, row in enumerate(patient.rows())
    ]
    twin.observe_many(obs)
    return twin


def one_step_mse(twin: Twin, seed: int = 99, n: int = 5) -> dict[str, float]:
    """MSE on v of the combination and of each predictor on new patients, the twin only
    asked (never scored)."""
    errs: dict[str, list[float]] = {}
    for patient in simulate_patients(n, seed=seed, steps=30):
        rows = patient.rows()
        for t in range(len(rows) - 1):
            state = {k: rows[t][k] for k in ("v", "c")}
            action = {k: rows[t][k] for k in ("ca", "ra")}
            p = twin.predict(state, action)
            errs.setdefault("combined", []).append((p.mean["v"] - rows[t + 1]["v"]) ** 2)
            for name, f in p.by_predictor.items():
                errs.setdefault(name, []).append((f["v"] - rows[t + 1]["v"]) ** 2)
            if p.upper:
                inside = p.lower["v"] <= rows[t + 1]["v"] <= p.upper["v"]
                errs.setdefault("covered", []).append(float(inside))
    return {k: float(np.mean(v)) for k, v in errs.items()}


def test_history_through_observe_many_teaches_weights_and_intervals():
    twin = cancer_twin()
    assert twin.hedge.n_updates_["numeric"] > 100
    mse = one_step_mse(twin)
    best = min(mse["numeric"], mse["persistence"])
    assert mse["combined"] <= 1.05 * best, mse
    assert 0.8 <= mse["covered"] <= 1.0, mse  # calibrated from the first prediction


def test_a_reopened_store_scores_its_history(tmp_path):
    path = tmp_path / "c.db"
    first = cancer_twin(SQLiteStore(path))
    w_first = first.hedge.weights(["persistence", "numeric"])
    first.close()
    again = Twin("cancer", store=path, predictors=[Persistence(), LocalRidge()])
    w_again = again.hedge.weights(["persistence", "numeric"])
    assert w_again["numeric"] > 0.99 and w_first["numeric"] > 0.99
    assert again.calibrator.n("v") >= 20
    p = again.predict({"v": 300.0, "c": 1.0}, {"ca": 5.0, "ra": 2.0})
    assert p.provenance["calibrated"]


def test_a_combination_is_never_meaningfully_worse_than_its_best_member():
    # numeric exact, a second predictor 1.2x worse: the mix stays within 5% of the best
    rng = np.random.default_rng(0)
    h = Hedge()
    errs_best, errs_mix = [], []
    for _ in range(300):
        y = float(rng.normal())
        good = y + float(rng.normal(scale=0.3))
        worse = y + float(rng.normal(scale=0.3 * math.sqrt(1.2)))
        bad = y + float(rng.normal(scale=3.0))
        preds = {"good": good, "worse": worse, "bad": bad}
        w = h.weights(list(preds))
        mix = sum(w[n] * preds[n] for n in preds)
        errs_best.append((good - y) ** 2)
        errs_mix.append((mix - y) ** 2)
        h.update({"x": y}, {"x": 0.0}, {n: {"x": v} for n, v in preds.items()})
    assert np.mean(errs_mix[50:]) <= 1.05 * np.mean(errs_best[50:])
    assert h.weights(["good", "worse", "bad"])["bad"] < 1e-6


def test_a_predictor_scored_on_a_sample_is_judged_on_its_own_steps():
    h = Hedge()
    for i in range(200):
        forecasts = {"numeric": {"x": 1.1}}
        if i % 20 == 0:
            forecasts["llm"] = {"x": 1.5}  # worse than numeric on every step it answers
        h.update({"x": 1.0}, {"x": 0.0}, forecasts)
    w = h.weights(["numeric", "llm"])
    assert w["llm"] < 0.01


def test_weight_is_earned_not_given():
    h = Hedge()
    for _ in range(10):
        h.update({"x": 1.0}, {"x": 0.0}, {"numeric": {"x": 1.1}})
    assert h.weights(["numeric", "llm"]) == {"numeric": 1.0, "llm": 0.0}
    assert Hedge().weights(["a", "b"]) == {"a": 0.5, "b": 0.5}


def test_integer_episode_names_link_transitions():
    twin = Twin(variables=CANCER_VARIABLES[:1], predictors=[Persistence()])
    twin.observe({"v": 1.0}, episode=1)  # type: ignore[arg-type]
    twin.observe({"v": 2.0}, episode=1)  # type: ignore[arg-type]
    twin.observe({"v": 3.0}, episode="1")
    assert [o.t for o in twin.history(episode="1")] == [0.0, 1.0, 2.0]
    assert len(twin.retriever) == 2


@pytest.mark.parametrize("times", [[10.0, 3.0, 3.0], [1.0, 1.0], [5.0, 2.0]])
def test_observe_many_refuses_times_that_do_not_rise(times):
    twin = Twin(variables=CANCER_VARIABLES[:1], predictors=[Persistence()])
    with pytest.raises(InvalidValue):
        twin.observe_many([Observation("e", t, {"v": 1.0}) for t in times])
    assert twin.history() == []
    twin.observe({"v": 1.0}, episode="e", t=4.0)
    with pytest.raises(InvalidValue):  # not after what is stored either
        twin.observe_many([Observation("e", 4.0, {"v": 2.0})])
    assert len(twin.history()) == 1
    assert twin.observe({"v": 1.0}, episode="e").t == 5.0  # the clock did not move


def test_observe_many_refuses_empty_values_and_stores_nothing():
    twin = Twin(variables=CANCER_VARIABLES[:1], predictors=[Persistence()])
    with pytest.raises(SchemaError):
        twin.observe_many([Observation("e", 0.0, {"v": 1.0}), Observation("e", 1.0, {})])
    assert twin.history() == []


def test_huge_values_never_overflow_the_scoring(xy_twin):
    feed_linear(xy_twin, 30)
    xy_twin.observe({"x": 1e154, "u": 0.0}, episode="e")
    xy_twin.observe({"x": -1e300, "u": 0.0}, episode="e")
    xy_twin.observe({"x": 1.7e308, "u": 0.0}, episode="e")
    assert len(xy_twin.history(episode="e")) == 33
    p = xy_twin.predict({"x": 1.0}, {"u": 0.0})  # a typed answer, not OverflowError
    assert math.isfinite(p.mean["x"])


def test_samples_follow_the_calibrated_residuals_at_any_level():
    for level in (0.5, 0.9):
        twin = Twin(variables=CANCER_VARIABLES, predictors=[Persistence(), LocalRidge()],
                    level=level, n_samples=4000)
        for i, patient in enumerate(simulate_patients(15, seed=3, steps=40)):
            for t, row in enumerate(patient.rows()):
                twin.observe(row, episode=f"p{i}", t=float(t))
        p = twin.predict({"v": 400.0, "c": 2.0}, {"ca": 5.0, "ra": 0.0})
        assert p.provenance["calibrated"]
        inside = np.mean((p.samples[:, 0] >= p.lower["v"]) & (p.samples[:, 0] <= p.upper["v"]))
        assert abs(inside - level) < 0.05, (level, inside)


def test_pending_live_predictions_are_bounded(xy_twin):
    twin = Twin(variables=list(xy_twin.schema.variables.values()),
                predictors=[Persistence()], max_pending=10)
    twin.observe({"x": 1.0, "u": 0.0}, episode="a")
    for i in range(50):
        twin.predict({"x": 1.0}, {"u": 0.0}, episode=f"new-{i}")
    assert len(twin._pending) == 10


def test_level_and_settings_are_typed_errors():
    with pytest.raises(InvalidValue):
        Twin(predictors=[Persistence()], level=1.5)
    with pytest.raises(InvalidValue):
        Twin(predictors=[Persistence()], score_window=-1)


def test_a_live_prediction_is_scored_once(xy_twin):
    feed_linear(xy_twin, 40, episode="f", predict=True)
    live = [s for s in xy_twin.scores_ if s.source == "live"]
    assert len(live) == 39 and len(xy_twin.scores_) == 39


def test_a_replaced_calibrator_is_the_one_that_learns(xy_twin):
    from lmtwin.uncertainty import Calibrator

    xy_twin.calibrator = Calibrator(min_residuals=4)
    feed_linear(xy_twin, 10)
    assert xy_twin.calibrator.n("x") == 9 and xy_twin.scorer.calibrator is xy_twin.calibrator


def test_history_through_the_service_teaches_weights_also_after_a_restart(tmp_path):
    """The service path: batches over HTTP, then a predict with no episode (a read) gets
    history-trained weights and intervals; again after the service restarts."""
    from lmtwin.service import Settings
    from tests.service.support import XU, client, linear_rows

    settings = Settings(store=str(tmp_path / "twins.db"))
    rows = linear_rows(120, episode="a") + linear_rows(120, episode="b")
    x = rows[-3]["values"]["x"]  # a state the history covers, under its own action
    body = {"state": {"x": x}, "action": {"u": 0.5}}
    with client(settings) as api:
        assert api.post("/twins", json={"name": "plant", "variables": XU}).status_code == 201
        for i in range(0, len(rows), 60):
            r = api.post("/twins/plant/observations/batch", json={"observations": rows[i:i + 60]})
            assert r.status_code == 201, r.text
        first = api.post("/twins/plant/predict", json=body).json()
    with client(settings) as api:
        again = api.post("/twins/plant/predict", json=body).json()
    for p in (first, again):
        assert p["weights"]["numeric"] > 0.99, p["weights"]
        assert p["mean"]["x"] == pytest.approx(0.9 * x + 0.5, abs=0.05)
        assert p["lower"]["x"] <= p["mean"]["x"] <= p["upper"]["x"]


def test_a_score_is_dated_by_the_observation_it_judges(xy_twin):
    xy_twin.observe({"x": 1.0, "u": 0.0}, episode="e", t=10.0)
    xy_twin.observe({"x": 0.9, "u": 0.0}, episode="e", t=12.5)
    xy_twin.observe_many([Observation("e", 20.0, {"x": 0.8, "u": 0.0})])
    assert [s.t for s in xy_twin.scores_] == [12.5, 20.0]
