from __future__ import annotations

import sys

import numpy as np
import pytest

from lmtwin.bench import baselines as bl
from lmtwin.bench.harness import Arrays, PersistenceMethod, mean_ci, metrics, rollout, stream
from lmtwin.bench.tasks import Sizes, load_task
from lmtwin.errors import DependencyNotInstalled, ParseError
from lmtwin.llm.scripted import ScriptedBackend
from lmtwin.predictors import Query, check_predictor
from lmtwin.schema import Schema

TINY = Sizes(patients=(6, 3, 2), test_trajectories=2, test_steps=8)


@pytest.fixture(scope="module")
def chemo():  # type: ignore[no-untyped-def]
    return load_task("cancer-chemo", 10, TINY)


def _query(task, t: int = 3) -> Query:  # type: ignore[no-untyped-def]
    traj = task.test[0]
    row = task.rows(traj)[t]
    return Query({s: row[s] for s in task.states}, {a: row[a] for a in task.actions},
                 list(task.states), Schema(task.variables))


@pytest.mark.parametrize("make", [
    bl.Ridge, bl.KNN, bl.SINDy, bl.ContextParroting,
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


def _saw(n: int = 3, steps: int = 40) -> Arrays:
    """Series that repeat a pattern the last value alone cannot tell apart."""
    pattern = np.array([0.0, 1.0, 2.0, 1.0])
    S = np.stack([np.tile(pattern, steps // 4 + 2)[i : i + steps + 1] for i in range(n)])
    return Arrays(S[:, :, None] + 5.0, np.zeros((n, steps, 0)))


def test_parroting_copies_what_followed_the_best_match() -> None:
    train, test = _saw(), _saw(2, 20)
    # after 1 -> 2 comes 1, after 0 -> 1 comes 2: window 2 tells them apart, window 1 not
    two = bl.ContextParroting(window=2).fit_arrays(train.S, train.A, ["x"], [])
    rec = stream(bl.ParrotMethod(two, "p"), test)["p"]
    assert np.allclose(rec.pred[:, 2:], test.S[:, 2:])
    one = bl.ContextParroting(window=1).fit_arrays(train.S, train.A, ["x"], [])
    assert not np.allclose(stream(bl.ParrotMethod(one, "p"), test)["p"].pred, test.S)


def test_online_variants_learn_from_the_revealed_rows(chemo) -> None:  # type: ignore[no-untyped-def]
    train, test = Arrays.of(chemo.train), Arrays.of(chemo.test)
    X, Y = train.deltas()
    frozen = bl.Ridge(alpha=1e-3).fit_arrays(X, Y, chemo.states, chemo.actions)
    online = bl.Ridge(alpha=1e-3).fit_arrays(X, Y, chemo.states, chemo.actions)
    stream(bl.FittedMethod(online, "ridge", online=True), test)
    Xt, _ = test.deltas()
    assert online.n_ == len(X) + len(Xt)
    # the extended normal equations are those of the same scaling on all the rows
    A = online._design_matrix(np.vstack([X, Xt]))
    assert np.allclose(online.AtA_, A.T @ A)
    assert not np.allclose(online.coef_, frozen.coef_)
    knn = bl.KNN().fit_arrays(X, Y, chemo.states, chemo.actions)
    stream(bl.FittedMethod(knn, "knn", online=True), test)
    assert len(knn.Z_) == len(X) + len(Xt)


def test_networks_stop_early_on_the_validation_loss(chemo) -> None:  # type: ignore[no-untyped-def]
    train, val = Arrays.of(chemo.train), Arrays.of(chemo.val)
    p = bl.DyNODE(steps=5000, seed=1, patience=2, check_every=10, lr=3e-2)
    p.val_ = val.deltas()
    p.fit_arrays(*train.deltas(), chemo.states, chemo.actions)
    assert p.info_["early_stopped"] and p.info_["steps_run"] < 5000
    assert p.info_["best_step"] <= p.info_["steps_run"]
    # the validation loss of every check is kept; the best one is the weights kept
    assert len(p.info_["curve"]) == p.info_["steps_run"] // 10
    assert min(p.info_["curve"]) == p.info_["val_loss"]
    g = bl.GRU(steps=4, seed=1, check_every=2, patience=5, batch=16)
    g.fit_sequences(train.S, train.A, val.S, val.A, chemo.states, chemo.actions)
    assert g.info_["steps_run"] == 4 and not g.info_["early_stopped"]
    out = stream(bl.SequenceMethod(g, "gru"), Arrays.of(chemo.test))["gru"]
    assert np.isfinite(out.pred).all()


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
    assert bl.LLMTime(ScriptedBackend(["1000 ,"])).forecast_series(
        np.array([[1.0], [2.0], [3.0]]))[0] == pytest.approx(2.9)
    p.reset()
    with pytest.raises(ParseError):
        bad = bl.LLMTime(ScriptedBackend(["no digits"]))
        for x in (1.0, 2.0):
            bad.predict(Query({"x": x}, {}, ["x"], schema), [])


def test_harness_scores_every_step_and_rollouts(chemo) -> None:  # type: ignore[no-untyped-def]
    train, test = Arrays.of(chemo.train), Arrays.of(chemo.test)
    p = bl.Ridge().fit_arrays(*train.deltas(), chemo.states, chemo.actions)
    method = bl.FittedMethod(p, "ridge")
    rec = stream(method, test)["ridge"]
    rec.rollout, rec.rollout_failures = rollout(method, test)
    var = train.states().var(axis=0)
    m = metrics(rec, var)
    assert m["predictions"] == 2 * 60 and m["failures"] == 0
    assert (rec.pred[:, 0] == test.S[:, 0]).all()  # pred[0] = x[0]
    manual = float(((rec.pred - test.S) ** 2).mean())
    assert m["mse"] == pytest.approx(manual)
    # one step of the rollout from x[0] is the teacher-forced one
    assert np.allclose(rec.rollout[:, 1], rec.pred[:, 1])
    assert m["rollout_mse"] >= 0 and "coverage" not in m
    same = stream(PersistenceMethod(), test)["persistence"]
    assert np.allclose(same.pred[:, 1:], test.S[:, :-1])


def test_mean_ci_uses_the_t_distribution() -> None:
    out = mean_ci([1.0, 2.0, 3.0])
    assert out["mean"] == 2.0
    assert out["ci95"] == pytest.approx(4.303 * 1.0 / np.sqrt(3), rel=1e-3)
    assert np.isnan(mean_ci([1.0])["ci95"])
