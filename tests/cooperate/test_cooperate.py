"""lmtwin.cooperate: objective, shaping, environments, bad input (on a real small twin)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from pettingzoo.test import parallel_api_test

from lmtwin import LocalRidge, Persistence, Twin
from lmtwin.cooperate import (
    Crisis,
    Game,
    Objective,
    Shaping,
    Step,
    TwinDynamics,
    Weights,
    budget,
    check_weights,
    cost,
    level,
    limit,
    twin_game,
    uncertainty,
)
from lmtwin.errors import (
    CooperateError,
    InvalidValue,
    InvalidWeights,
    NotReady,
    OwnershipError,
    UnknownVariable,
)
from lmtwin.systems.cancer import CANCER_VARIABLES, simulate_patients
from lmtwin.systems.cancer_control import CancerSystem

AGENTS = {"chemo": ["ca"], "radio": ["ra"]}
LEVELS = {"ca": [0.0, 5.0], "ra": [0.0, 2.0]}


def cancer_twin(patients: int = 8, steps: int = 25) -> Twin:
    twin = Twin("cancer", variables=CANCER_VARIABLES, predictors=[Persistence(), LocalRidge()])
    for i, p in enumerate(simulate_patients(patients, seed=3, steps=steps)):
        for t, row in enumerate(p.rows()):
            twin.observe(row, episode=f"p{i}", t=float(t))
    return twin


@pytest.fixture(scope="module")
def twin() -> Twin:
    return cancer_twin()


def objective(weights: object = (1.0, 1.0, 1.0)) -> Objective:
    return Objective(
        [
            level("v", scale=100.0),
            cost({"ca": 0.05}, agents=["chemo"], name="chemo toxicity"),
            cost({"ra": 0.2}, agents=["radio"], name="radio toxicity"),
            budget("ra", total=20.0, agents=["radio"]),
            uncertainty(["v"], scale=100.0),
        ],
        weights=weights,  # type: ignore[arg-type]
    )


# --- objective -----------------------------------------------------------------------
def test_objective_combines_dimensions_with_weights():
    o = objective((2.0, 1.0, 0.5))
    step = Step({"v": 100.0, "c": 0.0}, {"ca": 5.0, "ra": 2.0}, {"v": 50.0, "c": 5.0},
                totals={"ca": 5.0, "ra": 22.0}, sigma={"v": 10.0})
    ev = o.evaluate(step)
    assert ev.sums == pytest.approx({"physical": -0.5, "abstract": -0.25 - 0.4 - 2.0,
                                     "computational": -0.1})
    assert ev.value == pytest.approx(2 * -0.5 + 1 * (-2.65) + 0.5 * -0.1)
    r = o.rewards(ev, ["chemo", "radio"])
    # chemo: tumour, its toxicity, uncertainty; radio: tumour, its toxicity and budget
    assert r["chemo"] == pytest.approx(2 * -0.5 - 0.25 + 0.5 * -0.1)
    assert r["radio"] == pytest.approx(2 * -0.5 - 0.4 - 2.0 + 0.5 * -0.1)
    assert o.trajectory([step, step]) == pytest.approx(2 * ev.value)


def test_budget_counts_only_units_beyond_it():
    b = budget("ra", total=10.0)
    assert b.fn(Step({}, {"ra": 2.0}, {}, totals={"ra": 10.0})) == 0.0
    assert b.fn(Step({}, {"ra": 2.0}, {}, totals={"ra": 11.0})) == -1.0
    assert b.fn(Step({}, {"ra": 2.0}, {}, totals={"ra": 14.0})) == -2.0
    assert limit("v", upper=5.0).fn(Step({}, {}, {"v": 7.0})) == -2.0


def test_crisis_raises_physical_weight_when_a_limit_is_crossed():
    rule = Crisis({"v": (None, 300.0)}, normal=(1, 1, 1), crisis=(4, 1, 1))
    o = objective(rule)
    calm = o.evaluate(Step({"v": 100.0}, {"ca": 0.0}, {"v": 100.0}))
    crisis = o.evaluate(Step({"v": 400.0}, {"ca": 0.0}, {"v": 400.0}))
    assert calm.weights == Weights(1, 1, 1)
    assert crisis.weights == Weights(4, 1, 1)
    assert crisis.value == pytest.approx(4 * -4.0)


def test_user_weight_function_is_called_every_step():
    seen = []

    def rule(state):
        seen.append(state["v"])
        return {"physical": 1 + state["v"] / 100, "abstract": 1.0, "computational": 0.0}

    o = objective(rule)
    o.evaluate(Step({"v": 100.0}, {}, {"v": 90.0}))
    o.evaluate(Step({"v": 300.0}, {}, {"v": 290.0}))
    assert seen == [100.0, 300.0]


@pytest.mark.parametrize("bad", [(-1, 1, 1), (math.nan, 1, 1), (0, 0, 0), (1, 1),
                                 {"physical": 1, "tariff": 2}, "abc"])
def test_bad_weights_are_refused(bad):
    with pytest.raises(InvalidWeights):
        check_weights(bad)
    with pytest.raises(InvalidWeights):
        objective(bad)


def test_a_rule_returning_bad_weights_stops_the_step_and_changes_nothing(twin):
    env = twin.env(objective(lambda s: (1.0, -1.0, 1.0) if s["v"] > 0 else (1, 1, 1)),
                   agents=AGENTS, levels=LEVELS, horizon=5)
    env.reset(seed=0)
    before = (dict(env.unwrapped._ep.state), env.unwrapped._ep.t)
    with pytest.raises(InvalidWeights):
        env.step(0)
    assert (env.unwrapped._ep.state, env.unwrapped._ep.t) == before


def test_term_on_unknown_variable_is_refused(twin):
    with pytest.raises(UnknownVariable):
        twin.env(Objective([level("pressure")]), levels=LEVELS)
    with pytest.raises(UnknownVariable):
        twin.env(Objective([level("v")], weights=Crisis({"temp": (None, 1.0)})), levels=LEVELS)
    with pytest.raises(CooperateError):  # a term for an agent the game does not have
        twin.env(objective(), levels=LEVELS)


# --- shaping -------------------------------------------------------------------------
def test_shaping_formula_all_graph_and_independent():
    r = {"a": 1.0, "b": 2.0, "c": 4.0}
    assert Shaping(1.0, 0.0)(r) == r
    assert Shaping(1.0, 0.5)(r) == {"a": 1 + 0.5 * 6, "b": 2 + 0.5 * 5, "c": 4 + 0.5 * 3}
    ring = Shaping(0.5, 1.0, {"a": ["b"], "b": ["a", "c"], "c": []})
    assert ring(r) == {"a": 0.5 + 2.0, "b": 1.0 + 5.0, "c": 2.0}


def test_bad_shaping_is_refused():
    with pytest.raises(CooperateError):
        Shaping(1.0, -0.1)
    with pytest.raises(CooperateError):
        Shaping(0.0, 0.0)
    with pytest.raises(CooperateError):
        Shaping(1.0, 1.0, {"a": ["a"]}).check(["a", "b"])
    with pytest.raises(CooperateError):
        Shaping(1.0, 1.0, {"a": ["z"]}).check(["a", "b"])


# --- ownership, defaults, readiness -----------------------------------------------------
@pytest.mark.parametrize("agents", [
    {"chemo": ["ca"], "radio": ["v"]},            # a state, not an action
    {"chemo": ["ca"], "radio": ["dose"]},         # unknown
    {"chemo": ["ca", "ra"], "radio": ["ra"]},     # two owners
    {"chemo": []},                                # owns nothing
    {},
])
def test_bad_ownership_is_refused(twin, agents):
    n = len(twin.retriever)
    with pytest.raises(OwnershipError):
        twin.parallel_env(agents, Objective([level("v")]), levels=LEVELS)
    assert len(twin.retriever) == n


def test_default_policy_out_of_bounds_is_refused(twin):
    with pytest.raises(InvalidValue):
        twin.parallel_env({"chemo": ["ca"]}, Objective([level("v")]), levels={"ca": [0, 5]},
                          default={"ra": 50.0})
    with pytest.raises(InvalidValue):
        twin.parallel_env({"chemo": ["ca"]}, Objective([level("v")]), levels={"ca": [0, 5]},
                          default={"ra": math.nan})
    with pytest.raises(InvalidValue):  # levels outside bounds too
        twin.parallel_env(AGENTS, Objective([level("v")]), levels={"ca": [0, 11], "ra": [0]})


def test_default_policy_turning_bad_mid_episode_changes_nothing(twin):
    calls = []

    def default(state):
        calls.append(1)
        return {"ra": 0.0 if len(calls) < 3 else -1.0}

    env = twin.parallel_env({"chemo": ["ca"]}, Objective([level("v")]), levels={"ca": [0, 5]},
                            default=default, horizon=5)
    env.reset(seed=1)
    env.step({"chemo": 1})
    state, t = dict(env._ep.state), env._ep.t
    with pytest.raises(InvalidValue):
        env.step({"chemo": 1})
    assert (env._ep.state, env._ep.t) == (state, t)


def test_env_on_a_twin_with_too_little_data_is_not_ready():
    small = cancer_twin(patients=1, steps=5)
    with pytest.raises(NotReady):
        small.env(Objective([level("v")]), levels=LEVELS)
    empty = Twin("e", variables=CANCER_VARIABLES, predictors=[Persistence(), LocalRidge()])
    with pytest.raises(NotReady):
        empty.parallel_env(AGENTS, Objective([level("v")]), levels=LEVELS)


# --- environments ----------------------------------------------------------------------
@pytest.mark.parametrize("levels", [LEVELS, None], ids=["discrete", "box"])
def test_gymnasium_env_passes_check_env(twin, levels):
    env = twin.env(objective(Crisis({"v": (None, 400.0)})), agents=AGENTS, levels=levels,
                   horizon=8, observe_totals=["ra"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unbounded volume: gymnasium warns, rightly
        check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=4)
    assert obs.shape == (3,)  # v, c, the radio dose so far
    _, reward, term, trunc, info = env.step(env.action_space.sample())
    assert np.isfinite(reward) and not term and not trunc
    assert set(info["terms"]) == {t.name for t in env.unwrapped.game.objective.terms}


def test_parallel_env_passes_parallel_api_test(twin):
    env = twin.parallel_env(AGENTS, objective(), levels=LEVELS, horizon=6,
                            shaping=Shaping(1.0, 0.5))
    parallel_api_test(env, num_cycles=40)


def test_parallel_env_rewards_are_shaped(twin):
    for beta in (0.0, 0.7):
        env = twin.parallel_env(AGENTS, objective(), levels=LEVELS, horizon=3,
                                shaping=Shaping(1.0, beta))
        env.reset(seed=2)
        _, rewards, _, _, infos = env.step({"chemo": 1, "radio": 1})
        raw = {a: infos[a]["reward"] for a in AGENTS}
        assert rewards["chemo"] == pytest.approx(raw["chemo"] + beta * raw["radio"])
        assert rewards["radio"] == pytest.approx(raw["radio"] + beta * raw["chemo"])


def test_env_dynamics_are_the_twin_and_follow_it_as_it_learns():
    """A drift reaches the env through the twin (no rebuild, no retraining)."""
    tw = cancer_twin(patients=20, steps=25)
    game = twin_game(tw, Objective([level("v")]), AGENTS, horizon=3, levels=LEVELS,
                     noise=False)
    start = {"v": 400.0, "c": 0.0}
    before = game.play({}, start, seed=0).states[-1]["v"]
    true = game.with_dynamics(CancerSystem()).play({}, start, seed=0).states[-1]["v"]
    assert before == pytest.approx(true, rel=0.1)  # the twin learnt the untreated growth
    # the true system drifts (growth x 4); the twin observes it and the same game follows
    drifted = CancerSystem(rho=4 * CancerSystem().rho)
    rng = np.random.default_rng(0)
    for e in range(6):
        s = {"v": float(rng.uniform(100, 800)), "c": 0.0}
        for t in range(25):
            a = {"ca": 0.0, "ra": 0.0}
            tw.observe({**s, **a}, episode=f"drift{e}", t=float(t))
            s, _ = drifted.step(s, a, rng)
    after = game.play({}, start, seed=0).states[-1]["v"]
    truth = game.with_dynamics(drifted).play({}, start, seed=0).states[-1]["v"]
    assert abs(after - truth) < abs(before - truth) / 2


def test_common_random_numbers_and_calibrated_noise():
    tw = cancer_twin(patients=6, steps=25)
    # score the twin's predictions so it calibrates intervals (noise comes from them)
    for i, p in enumerate(simulate_patients(3, seed=9, steps=25)):
        rows = p.rows()
        for t, row in enumerate(rows):
            if t:
                tw.predict({"v": rows[t - 1]["v"], "c": rows[t - 1]["c"]},
                           {"ca": rows[t - 1]["ca"], "ra": rows[t - 1]["ra"]}, episode=f"q{i}",
                           predictors=["persistence", "numeric"])
            tw.observe(row, episode=f"q{i}", t=float(t))
    game = twin_game(tw, Objective([level("v")]), AGENTS, horizon=5, levels=LEVELS)
    start = {"v": 300.0, "c": 0.0}
    a, b = game.play({}, start, seed=1), game.play({}, start, seed=1)
    c = game.play({}, start, seed=2)
    assert a.states == b.states and a.states != c.states
    dyn = game.dynamics
    assert isinstance(dyn, TwinDynamics)
    _, sigma = dyn.step(start, {"ca": 0.0, "ra": 0.0}, np.random.default_rng(0))
    assert sigma["v"] > 0


def test_game_with_hand_written_dynamics_and_policies():
    game = Game(CancerSystem(), objective(), AGENTS, [{"v": 500.0, "c": 0.0}], horizon=10,
                levels=LEVELS)
    treat = {"chemo": lambda s, tot: {"ca": 5.0}, "radio": lambda s, tot: {"ra": 2.0}}
    none = game.play(treat, game.starts[0], seed=0, acting=[])
    both = game.play(treat, game.starts[0], seed=0)
    assert both.states[-1]["v"] < none.states[-1]["v"]
    assert [a["ca"] for a in both.actions] == [5.0] * 10
    assert [a["ca"] for a in none.actions] == [0.0] * 10
    with pytest.raises(OwnershipError):
        game.play({"chemo": lambda s, tot: {"ra": 2.0}}, game.starts[0], seed=0)
