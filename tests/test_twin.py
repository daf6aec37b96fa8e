"""Twin plumbing on numeric predictors and the scripted backend."""

import math
import time

import numpy as np
import pytest

from lmtwin import (
    InvalidValue,
    LLMPredictor,
    LocalRidge,
    NotReady,
    ParseError,
    Persistence,
    SchemaError,
    Twin,
    UnknownVariable,
    Variable,
)
from lmtwin.llm import ScriptedBackend
from lmtwin.predictors import Query
from tests.conftest import feed_linear


def test_predict_on_empty_twin_is_not_ready():
    twin = Twin(predictors=[Persistence()])
    with pytest.raises(NotReady):
        twin.predict({})


def test_before_any_data_the_twin_answers_like_persistence(xy_twin):
    p = xy_twin.predict({"x": 2.0}, {"u": 0.0})
    assert p.mean == {"x": 2.0}
    assert p.weights == {"persistence": 1.0}
    assert "numeric" in p.provenance["skipped"]


def test_twin_learns_linear_system_in_context(xy_twin):
    feed_linear(xy_twin, 60)
    p = xy_twin.predict({"x": 2.0}, {"u": 0.5})
    assert p.by_predictor["numeric"]["x"] == pytest.approx(0.9 * 2.0 + 0.5, abs=0.05)
    # nothing was predicted live, yet the weights learnt from the history (prequential)
    assert p.weights["numeric"] > 0.99
    feed_linear(xy_twin, 30, episode="f", predict=True)
    p = xy_twin.predict({"x": 2.0}, {"u": 0.5})
    assert p.mean["x"] == pytest.approx(0.9 * 2.0 + 0.5, abs=0.05)
    assert p.samples.shape == (50, 1)
    assert set(p.by_predictor) == {"persistence", "numeric"}
    assert sum(p.weights.values()) == pytest.approx(1.0)


def test_weights_follow_errors_and_intervals_calibrate(xy_twin):
    x = 1.0
    for t in range(120):
        u = float(np.sin(t))
        xy_twin.observe({"x": x, "u": u}, episode="e", t=float(t))
        p = xy_twin.predict({"x": x}, {"u": u}, episode="e")
        x = 0.9 * x + u
    assert p.weights["numeric"] > 0.9
    assert p.provenance["calibrated"]
    assert p.lower["x"] < p.mean["x"] < p.upper["x"]
    scored = [s for s in xy_twin.scores_ if s.lower is not None]
    cover = np.mean([s.lower <= s.actual <= s.upper for s in scored])
    assert 0.6 <= cover <= 1.0


@pytest.mark.parametrize("bad", [{"x": math.nan}, {"x": "3"}, {"x": math.inf}])
def test_bad_values_raise_and_lose_nothing(xy_twin, bad):
    feed_linear(xy_twin, 5)
    before = xy_twin.history()
    with pytest.raises(InvalidValue):
        xy_twin.observe(bad, episode="e")
    assert xy_twin.history() == before


def test_unknown_variable_strict_raises_lenient_adds(xy_twin):
    with pytest.raises(UnknownVariable):
        xy_twin.observe({"x": 1.0, "temp": 20.0})
    assert xy_twin.history() == []
    version = xy_twin.schema.version
    xy_twin.observe({"x": 1.0, "temp": 20.0}, strict=False)
    assert "temp" in xy_twin.schema and xy_twin.schema.version == version + 1
    assert xy_twin.history()[0].values == {"x": 1.0, "temp": 20.0}


def test_out_of_bounds_and_time_order():
    twin = Twin(variables=[Variable("x", lower=0)], predictors=[Persistence()])
    with pytest.raises(InvalidValue, match="lower bound"):
        twin.observe({"x": -1.0})
    twin.observe({"x": 1.0}, t=5.0)
    with pytest.raises(InvalidValue, match="not after"):
        twin.observe({"x": 1.0}, t=5.0)
    with pytest.raises(SchemaError):
        twin.observe({})


def test_missing_is_not_zero(xy_twin):
    xy_twin.observe({"x": 1.0, "u": 0.0}, episode="e", t=0.0)
    xy_twin.observe({"u": 1.0}, episode="e", t=1.0)
    xy_twin.observe({"x": 3.0}, episode="e", t=2.0)
    assert xy_twin.history(episode="e")[1].values == {"u": 1.0}
    tr = xy_twin.retriever.transitions
    assert tr[0].next_state == {} and tr[0].delta("x") is None
    assert xy_twin.state("e") == {"x": 3.0, "u": 1.0}


def test_schema_changes_while_running_and_reopen(tmp_path):
    path = tmp_path / "twin.db"
    numeric = [Persistence(), LocalRidge()]
    twin = Twin("a", variables=[Variable("x")], store=path, predictors=numeric)
    feed = [{"x": float(i)} for i in range(5)]
    for row in feed:
        twin.observe(row)
    twin.add_variable(Variable("y", "state", "K", "temperature"))
    twin.describe_variable("y", description="outlet temperature")
    twin.add_knowledge("the outlet was cleaned")
    twin.observe({"x": 5.0, "y": 1.0})
    twin.remove_variable("y")
    cut = time.time()
    twin.observe({"x": 6.0})
    twin.close()
    again = Twin("a", store=path, predictors=[Persistence(), LocalRidge()])
    assert again.schema.version == 4 and again.schema.names() == ["x"]
    assert [n.text for n in again.notes] == ["the outlet was cleaned"]
    assert len(again.history()) == 7
    assert len(again.history(as_of=cut)) == 6
    assert len(again.retriever) == 6
    assert again.state(as_of=cut) == {"x": 5.0, "y": 1.0}


def test_predict_rejects_unknown_and_misplaced(xy_twin):
    with pytest.raises(UnknownVariable):
        xy_twin.predict({"x": 1.0, "zz": 2.0})
    with pytest.raises(SchemaError):
        xy_twin.predict({"x": 1.0}, {"x": 2.0})


def test_llm_predictor_plumbing_with_scripted_backend(xy_twin):
    backend = ScriptedBackend(lambda prompt: " 50\n")
    xy_twin.predictors.append(LLMPredictor(backend))
    xy_twin.add_knowledge("pushes are stronger on Mondays")
    feed_linear(xy_twin, 10)
    p = xy_twin.predict({"x": 2.0}, {"u": 0.5})
    assert p.by_predictor["llm"]["x"] == pytest.approx(2.5)
    prompt = backend.prompts[-1]
    assert "# note: pushes are stronger on Mondays" in prompt
    assert "# x: position [m]" in prompt
    assert "-> dx*100" in prompt  # changes of x are written in hundredths
    assert "# x*10 u*100 -> dx*100" in prompt
    assert prompt.splitlines()[-1] == "20 50 ->"


def test_unparseable_reply_retries_then_reports(xy_twin):
    backend = ScriptedBackend(["I think it goes up", "no idea", " 25"])
    llm = LLMPredictor(backend, retries=2)
    xy_twin.predictors.append(llm)
    feed_linear(xy_twin, 10)
    p = xy_twin.predict({"x": 2.0}, {"u": 0.0})
    assert p.by_predictor["llm"]["x"] == pytest.approx(2.25)
    assert p.provenance["info"]["llm"]["parse_failures"] == 2
    # always unparseable: a typed error inside the predictor, a reported fallback in the twin
    xy_twin.predictors[-1] = LLMPredictor(ScriptedBackend(["???"]), retries=1)
    with pytest.raises(ParseError) as info:
        xy_twin.predictors[-1].predict(
            Query({"x": 2.0}, {"u": 0.0}, ["x"]), xy_twin.retriever.transitions
        )
    assert info.value.raw == "???"
    p = xy_twin.predict({"x": 2.0}, {"u": 0.0})
    assert "llm" not in p.by_predictor
    assert p.provenance["skipped"]["llm"].startswith("ParseError")


def test_simulate_paths(xy_twin):
    feed_linear(xy_twin, 60, predict=True)
    sim = xy_twin.simulate({"x": 1.0}, [{"u": 0.0}] * 5, n_paths=3)
    assert sim.paths.shape == (3, 6, 1)
    # every path is a sample (path 0 is no longer the mean path): their median is near it
    many = xy_twin.simulate({"x": 1.0}, [{"u": 0.0}] * 5, n_paths=101, seed=0)
    assert np.median(many.paths[:, -1, 0]) == pytest.approx(0.9**5, abs=0.05)
    assert sim.quantiles().shape == (3, 6, 1)
    with pytest.raises(SchemaError):
        xy_twin.simulate({"x": 1.0}, [], n_paths=1)


def test_add_knowledge_rejects_empty_and_oversized(xy_twin):
    with pytest.raises(SchemaError):
        xy_twin.add_knowledge("  ")
    with pytest.raises(SchemaError):
        xy_twin.add_knowledge("x" * 5000)


def test_forecast_is_the_predictions_mean_without_scoring(xy_twin):
    feed_linear(xy_twin, predict=True)
    scored = len(xy_twin.scores_)
    point = xy_twin.forecast({"x": 2.0}, {"u": 0.5})
    full = xy_twin.predict({"x": 2.0}, {"u": 0.5})
    assert point.keys() == full.mean.keys() == {"x"}
    assert abs(point["x"] - full.mean["x"]) < 1e-9 and abs(point["x"] - 2.3) < 0.05
    only = xy_twin.forecast({"x": 2.0}, {"u": 0.5}, predictors=["persistence"])
    assert only == {"x": 2.0}
    assert len(xy_twin.scores_) == scored  # never scored


def test_a_failed_write_leaves_neither_the_new_variable_nor_the_row(tmp_path):
    """observe on a lenient twin adds unknown names as variables; if the store then
    refuses the row (here a real SQLite trigger aborts the insert), the variable is not
    kept either: not in the store, not in the twin, not after a reopen."""
    from lmtwin.errors import StoreError
    from lmtwin.store import SQLiteStore

    path = tmp_path / "t.db"
    store = SQLiteStore(path)
    store.execute("CREATE TRIGGER full BEFORE INSERT ON observations WHEN NEW.value > 1e6"
                  " BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    twin = Twin("t", [Variable("x")], store=store, strict=False)
    twin.observe({"x": 1.0}, t=0)
    with pytest.raises(StoreError, match="disk full"):
        twin.observe({"x": 2.0, "y": 2e6}, t=1)
    assert "y" not in twin.schema and twin.schema.version == 1
    assert [c.variable.name for c in store.schema_changes("t")] == ["x"]
    assert len(store.observations("t")) == 1
    twin.observe({"x": 2.0, "y": 3.0}, t=1)  # the retry is accepted at the same time
    reopened = Twin("t", store=SQLiteStore(path))
    assert "y" in reopened.schema and len(reopened.store.observations("t")) == 2
