"""Batched rollouts: the batch calls agree with the per-call path, paths are samples from
the calibrated uncertainty, and a seed gives common random numbers."""

import numpy as np
import pytest

from lmtwin import LocalRidge, NearestNeighbours, Persistence, Twin, Variable
from lmtwin.errors import InvalidValue, SchemaError, UnknownVariable
from lmtwin.intervene import rollout, uniforms
from lmtwin.intervene.plans import check_plan
from lmtwin.predictors.simple import Batch, features
from lmtwin.types import Query
from tests.conftest import feed_linear


def feed_noisy(twin, n=400, noise=0.05, seed=0):
    """x' = 0.9 x + u + noise, pushes at random; each step predicted first (scored)."""
    rng = np.random.default_rng(seed)
    x = 1.0
    for t in range(n):
        u = float(rng.choice([0.0, 0.5, 1.0]))
        twin.observe({"x": x, "u": u}, episode="e", t=float(t))
        twin.predict({"x": x}, {"u": u}, episode="e")
        x = 0.9 * x + u + noise * rng.standard_normal()


def _twin(n=400):
    twin = Twin("xy", variables=[Variable("x", "state", "m", "position"),
                                 Variable("u", "action", "m", "push", lower=0, upper=2)],
                predictors=[Persistence(), LocalRidge(), NearestNeighbours()])
    feed_noisy(twin, n)
    return twin


def test_batch_predict_matches_single_predict():
    twin = _twin()
    rng = np.random.default_rng(0)
    states, acts = rng.uniform(0, 3, 20), rng.choice([0.0, 0.5], 20)
    q0 = Query({"x": 1.0}, {"u": 0.0}, ["x"])
    names = features(q0)
    columns = {"s:x": states, "a:u": acts}
    ids = twin.retriever.search_batch(columns, 20, twin.schema, 64)
    xs, ds = twin.retriever.arrays(names, ["x"])
    valid = (ids >= 0)[:, :, None]
    batch = Batch(names, ["x"], np.column_stack([states, acts]), states[:, None],
                  np.where(valid, xs[np.clip(ids, 0, None)], np.nan),
                  np.where(valid, ds[np.clip(ids, 0, None)], np.nan))
    for p in twin.predictors:
        mean, ok = p.predict_batch(batch)
        assert ok.all()
        for i in range(20):
            q = Query({"x": states[i]}, {"u": acts[i]}, ["x"])
            ex = twin.retriever.search(q.state, q.action, twin.schema, k=p.k) if p.k else []
            assert mean[i, 0] == pytest.approx(p.predict(q, ex).mean[0], rel=1e-6, abs=1e-9)


def test_local_ridge_batch_reports_queries_without_enough_examples():
    nan = np.nan
    batch = Batch(["x"], ["x"], np.array([[1.0], [2.0]]), np.array([[1.0], [2.0]]),
                  np.array([[[0.0], [1.0], [2.0]], [[0.0], [nan], [nan]]]),
                  np.array([[[0.1], [0.2], [0.3]], [[0.1], [nan], [nan]]]))
    mean, ok = LocalRidge(min_examples=3).predict_batch(batch)
    assert ok.tolist() == [True, False]
    assert np.isfinite(mean).all()


def test_mean_rollout_is_the_forecast_fed_back():
    twin = _twin()
    plan = [{"u": 0.5 if t % 2 else 0.0} for t in range(6)]
    actions, values = check_plan(twin.schema, plan)
    out = rollout(twin, {"x": 1.0}, actions, values[None], None)
    x = 1.0
    for t, step in enumerate(plan):
        x = twin.forecast({"x": x}, step)["x"]
        assert out.paths[0, t + 1, 0] == pytest.approx(x, rel=1e-9)


def test_simulate_samples_every_path_with_common_random_numbers():
    twin = _twin()
    plan = [{"u": 0.0}] * 5
    sim = twin.simulate({"x": 5.0}, plan, n_paths=400, seed=3)
    assert sim.paths.shape == (400, 6, 1)
    # path 0 is a sample like the others, not the mean path
    mean_path = rollout(twin, {"x": 5.0}, ["u"], check_plan(twin.schema, plan)[1][None],
                        None).paths[0]
    assert not np.allclose(sim.paths[0], mean_path)
    assert len(np.unique(sim.paths[:, -1, 0])) > 300
    # the samples centre on the truth, 5 * 0.9^5, with the calibrated spread
    assert abs(np.median(sim.paths[:, -1, 0]) - 5 * 0.9**5) < 0.15
    assert sim.paths[:, -1, 0].std() > 0.05  # at least the true noise's 0.08 after 5 steps
    again = twin.simulate({"x": 5.0}, plan, n_paths=400, seed=3)
    assert np.array_equal(sim.paths, again.paths)
    other = twin.simulate({"x": 5.0}, plan, n_paths=400, seed=4)
    assert not np.array_equal(sim.paths, other.paths)


def test_common_random_numbers_couple_two_plans():
    twin = _twin()
    u = uniforms(0, 300, 5, 1)
    _, a = check_plan(twin.schema, [{"u": 0.0}] * 5)
    _, b = check_plan(twin.schema, [{"u": 0.5}] + [{"u": 0.0}] * 4)
    ra = rollout(twin, {"x": 5.0}, ["u"], np.repeat(a[None], 300, 0), u)
    rb = rollout(twin, {"x": 5.0}, ["u"], np.repeat(b[None], 300, 0), u)
    diff = rb.paths[:, -1, 0] - ra.paths[:, -1, 0]
    # paired on the same noise the push's effect (0.5 * 0.9^4 = 0.33) is sharp
    assert abs(np.median(diff) - 0.5 * 0.9**4) < 0.1
    unpaired = rollout(twin, {"x": 5.0}, ["u"], np.repeat(b[None], 300, 0),
                       uniforms(1, 300, 5, 1)).paths[:, -1, 0] - ra.paths[:, -1, 0]
    assert diff.std() < 0.5 * unpaired.std()


def test_language_model_joins_only_when_named():
    from lmtwin import LLMPredictor
    from lmtwin.llm import ScriptedBackend

    backend = ScriptedBackend(["0.0"] * 100)
    twin = Twin("xy", variables=[Variable("x"), Variable("u", "action", lower=0, upper=2)],
                predictors=[Persistence(), LocalRidge(), LLMPredictor(backend)])
    feed_linear(twin, 60, predict=True)
    calls = len(backend.prompts)
    twin.simulate({"x": 1.0}, [{"u": 0.0}] * 3, n_paths=4, seed=0)
    assert len(backend.prompts) == calls
    twin.simulate({"x": 1.0}, [{"u": 0.0}] * 3, n_paths=4, seed=0,
                  predictors=["numeric", "llm"])
    assert len(backend.prompts) == calls + 12  # one call per path-step


def test_noise_draws_from_residuals_of_similar_difficulty():
    from lmtwin.uncertainty import Calibrator

    cal = Calibrator(window=300)
    rng = np.random.default_rng(0)
    for i in range(300):  # additive noise 0.5 whatever the difficulty sigma
        sigma = 0.05 if i % 2 else 2.0
        cal.add("x", 0.5 * rng.standard_normal(), 0.0, sigma)
    u = np.full(2, 0.95)
    mixed = cal.residual_quantiles("x", u)
    binned = cal.residual_quantiles("x", u, np.array([0.05, 2.0]))
    # noise = sigma * q: binned, both difficulties give the true 95% point 0.5 * 1.645
    assert binned[0] * 0.05 == pytest.approx(0.82, rel=0.25)
    assert binned[1] * 2.0 == pytest.approx(0.82, rel=0.25)
    assert mixed[1] * 2.0 > 3 * 0.82  # mixed: easy steps' large ratios inflate hard ones


@pytest.mark.model
def test_rollout_with_the_embedded_language_model(gemma):
    from lmtwin import LLMPredictor

    twin = Twin("xy", variables=[Variable("x", "state", "m", "position"),
                                 Variable("u", "action", "m", "push", lower=0, upper=2)],
                predictors=[Persistence(), LocalRidge(), LLMPredictor(gemma)],
                costly_every=1000)  # no language-model scoring while loading: 4 calls only
    rng = np.random.default_rng(0)
    x = 5.0
    for t in range(30):
        u = float(rng.choice([0.0, 0.5, 1.0]))
        twin.observe({"x": x, "u": u}, episode="e", t=float(t))
        x = 0.9 * x + u + 0.05 * rng.standard_normal()
    # the mean paths (no noise): the language model is asked once per path-step
    out = rollout(twin, {"x": 5.0}, ["u"], np.zeros((2, 2, 1)), None,
                  predictors=["numeric", "llm"])
    assert out.paths.shape == (2, 3, 1) and np.isfinite(out.paths).all()
    assert out.answered["numeric"] == 4
    assert out.answered["llm"] >= 3  # a reply it cannot parse is counted, not guessed
    assert 3.0 < out.paths[:, -1, 0].mean() < 6.0  # truth 5 * 0.81 = 4.05


def test_simulate_takes_one_start_state_per_path():
    twin = _twin()
    plan = [{"u": 0.5}] * 4
    starts = np.linspace(0.5, 4.0, 50)
    cohort = twin.simulate([{"x": float(x)} for x in starts], plan, seed=7)
    assert cohort.paths.shape == (50, 5, 1)
    assert np.array_equal(cohort.paths[:, 0, 0], starts)
    # the same as a mapping of arrays, and path i as if every path had started at x_i
    # (paths are independent given the noise: the same uniforms, the same path)
    assert np.array_equal(twin.simulate({"x": starts}, plan, seed=7).paths, cohort.paths)
    for i in (0, 17, 49):
        alone = twin.simulate({"x": float(starts[i])}, plan, n_paths=50, seed=7)
        np.testing.assert_allclose(alone.paths[i], cohort.paths[i], rtol=1e-12)
    # each path follows its own start: x4 = 0.9^4 x0 + 0.5 (1 - 0.9^4) / 0.1
    truth = 0.9**4 * starts + 0.5 * (1 - 0.9**4) / 0.1
    assert np.corrcoef(cohort.paths[:, -1, 0], truth)[0, 1] > 0.95
    assert np.median(np.abs(cohort.paths[:, -1, 0] - truth)) < 0.2


@pytest.mark.parametrize(("state", "n_paths", "error", "match"), [
    ({"x": [1.0, 2.0, np.nan]}, None, InvalidValue, "path 2: not a finite number"),
    ([{"x": 1.0}, {"x": float("inf")}], None, InvalidValue, "path 1"),
    ({"x": [1.0, 2.0]}, 3, InvalidValue, "number of start states"),
    ({"x": [[1.0, 2.0]]}, None, InvalidValue, "1-d"),
    ({"x": [1.0, 2.0], "z": [0.0, 1.0]}, None, UnknownVariable, "z"),
    ([{"x": 1.0}, {"x": 2.0, "u": 0.0}], None, SchemaError, "every path must name"),
    ({"x": [1.0, 2.0], "u": [0.0, 1.0]}, None, SchemaError, "actions"),
    ([], None, SchemaError, "non-empty"),
    ({"x": [1.0, True]}, None, InvalidValue, "expected numbers"),
    ({"x": ["1", "2"]}, None, InvalidValue, "expected numbers"),
    ("x=1", None, SchemaError, "mapping"),
])
def test_bad_start_states_are_refused_and_change_nothing(state, n_paths, error, match):
    twin = _twin(200)
    rng_before = twin._rng.bit_generator.state
    stored = len(twin.retriever)
    with pytest.raises(error, match=match):
        twin.simulate(state, [{"u": 0.0}] * 3, n_paths=n_paths)
    assert twin._rng.bit_generator.state == rng_before
    assert len(twin.retriever) == stored


def test_start_states_outside_a_bound_name_the_path():
    twin = Twin("b", variables=[Variable("x", lower=0.0), Variable("u", "action", lower=0,
                                                                   upper=2)])
    with pytest.raises(InvalidValue, match="path 1: below the lower bound 0"):
        twin.simulate({"x": [1.0, -1.0]}, [{"u": 0.0}])
