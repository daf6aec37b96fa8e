from __future__ import annotations

import sys

import numpy as np
import pytest

from lmtwin.bench import baselines as bl
from lmtwin.bench.harness import PredictorMethod, mean_ci, metrics, rollout, stream
from lmtwin.bench.tasks import Sizes, load_task
from lmtwin.errors import DependencyNotInstalled, ParseError
from lmtwin.llm.scripted import ScriptedBackend
from lmtwin.predictors import Query, check_predictor
from lmtwin.schema import Schema

TINY = Sizes(patients=(6, 1, 1), test_trajectories=1, test_steps=8)


@pytest.fixture(scope="module")
def chemo():  # type: ignore[no-untyped-def]
    return load_task("cancer-chemo", 10, TINY)


def _query(task, t: int = 3) -> Query:  # type: ignore[no-untyped-def]
    traj = task.test[0]
    row = task.rows(traj)[t]
    return Query({s: row[s] for s in task.states}, {a: row[a] for a in task.actions},
                 list(task.states), Schema(task.variables))


@pytest.mark.parametrize("make", [
    bl.Ridge, bl.KNN, bl.SINDy,
    lambda: bl.DyNODE(steps=20), lambda: bl.GRU(steps=3), lambda: bl.Transformer(steps=3),
])
def test_fitted_baselines_answer_the_predictor_contract(chemo, make) -> None:  # type: ignore[no-untyped-def]
    p = make()
    p.fit(chemo.transitions(chemo.train))
    assert p.k == 0 and p.fit_seconds_ >= 0
    check_predictor(p, [], _query(chemo))


def test_sindy_finds_the_chemo_equation(chemo) -> None:  # type: ignore[no-untyped-def]
    p = bl.SINDy().fit(chemo.transitions(chemo.train))
    # dc/dt = -c/2 + ca is in the library: the fitted change must match it closely
    q = _query(chemo)
    c_next = p.predict(q, []).mean[chemo.states.index("c")]
    assert c_next == pytest.approx(q.state["c"] * 0.5 + q.action["ca"], abs=1e-3)


def test_a_new_target_is_carried_forward_and_a_missing_input_imputed(chemo) -> None:  # type: ignore[no-untyped-def]
    untreated = load_task("cancer-untreated", 10, TINY)
    p = bl.Ridge().fit(untreated.transitions(untreated.train))
    q = _query(chemo)  # has c and ca, which the fit never saw
    out = p.predict(q, []).mean
    assert out[q.targets.index("c")] == q.state["c"]
    assert out[q.targets.index("v")] != q.state["v"]


def test_missing_optional_dependency_names_the_extra(chemo, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "pysindy", None)  # as if it were not installed
    with pytest.raises(DependencyNotInstalled) as err:
        bl.SINDy().fit(chemo.transitions(chemo.train))
    assert "lmtwin[bench]" in str(err.value)


def test_llmtime_serialises_digits_without_the_point_and_decodes_the_reply() -> None:
    backend = ScriptedBackend(["1000 ,"])
    p = bl.LLMTime(backend, precision=3)
    schema = Schema()
    for x in (1.0, 2.0, 3.0):
        out = p.predict(Query({"x": x}, {}, ["x"], schema), [])
    prompt = backend.prompts[-1]
    assert "." not in prompt and prompt.endswith(",")
    groups = [g.strip() for g in prompt.rstrip(",").split(",")]
    assert len(groups) == 3 and all(g.isdigit() for g in groups)
    # scaler: shift = 1 - 0.3 * 2 = 0.4; q = 95% quantile of (x - 0.4) = 2.5;
    # "1000" = 1.000 in scaled units = 0.4 + 2.5
    assert out.mean[0] == pytest.approx(2.9)
    p.reset()
    with pytest.raises(ParseError):
        bad = bl.LLMTime(ScriptedBackend(["no digits"]))
        for x in (1.0, 2.0):
            bad.predict(Query({"x": x}, {}, ["x"], schema), [])


def test_harness_scores_predict_before_observe_and_rollouts(chemo) -> None:  # type: ignore[no-untyped-def]
    test = chemo.test_set(TINY)
    p = bl.Ridge().fit(chemo.transitions(chemo.train))
    rec = stream(PredictorMethod(p, chemo), chemo, test, "t")["ridge"]
    rec.rollout = [rollout(p, chemo, traj) for traj in test]
    var = np.concatenate([t.states for t in chemo.train]).var(axis=0)
    m = metrics(rec, var)
    assert m["predictions"] == 8 and m["failures"] == 0
    assert rec.pred[0][0].tolist() == test[0].states[0].tolist()  # pred[0] = x[0]
    manual = float(((rec.pred[0] - test[0].states) ** 2).mean())
    assert m["mse"] == pytest.approx(manual)
    assert m["rollout_mse"] >= 0 and "coverage" not in m


def test_mean_ci_uses_the_t_distribution() -> None:
    out = mean_ci([1.0, 2.0, 3.0])
    assert out["mean"] == 2.0
    assert out["ci95"] == pytest.approx(4.303 * 1.0 / np.sqrt(3), rel=1e-3)
    assert np.isnan(mean_ci([1.0])["ci95"])
