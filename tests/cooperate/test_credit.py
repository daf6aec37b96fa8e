"""Shapley credit: exact against known games, efficiency, sampled against exact."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lmtwin.cooperate import (
    CoalitionValue,
    Game,
    Objective,
    cost,
    credit,
    exact_shapley,
    limit,
    sampled_shapley,
    shapley,
    twin_game,
)
from lmtwin.systems.microgrid import Microgrid


def test_exact_shapley_of_known_games():
    # additive game: each player's value is its own contribution
    w = {"a": 1.0, "b": 2.0, "c": -0.5}
    phi = exact_shapley(lambda s: sum(w[p] for p in s), list(w))
    assert phi == pytest.approx(w)
    # glove game: a owns a left glove, b and c a right one; a pair is worth 1
    glove = exact_shapley(lambda s: float("a" in s and ("b" in s or "c" in s)), ["a", "b", "c"])
    assert glove == pytest.approx({"a": 2 / 3, "b": 1 / 6, "c": 1 / 6})


def test_sampled_shapley_is_efficient_and_close_on_a_random_game():
    rng = np.random.default_rng(0)
    players = [f"p{i}" for i in range(6)]
    table = {frozenset(s): float(rng.normal()) * len(s)
             for k in range(7) for s in itertools.combinations(players, k)}
    table[frozenset()] = 0.0
    exact = exact_shapley(table.__getitem__, players)
    sampled = sampled_shapley(table.__getitem__, players, permutations=4000, seed=1)
    total = table[frozenset(players)]
    assert sum(exact.values()) == pytest.approx(total)
    assert sum(sampled.values()) == pytest.approx(total)
    spread = sum(abs(v) for v in exact.values())
    assert max(abs(sampled[p] - exact[p]) for p in players) < 0.1 * spread


def microgrid_game(mg: Microgrid, agents: dict[str, list[str]]) -> Game:
    objective = Objective([
        cost(dict(zip(mg.gens(), (0.3, 0.35), strict=False)), dimension="abstract",
             name="fuel"),
        cost({"dr": 0.2}, dimension="abstract", name="discomfort"),
        limit("net", upper=mg.grid_cap, scale=1.0, dimension="physical", name="grid strain"),
        limit("co2", upper=200.0, dimension="abstract", name="emission cap"),
    ])
    rng = np.random.default_rng(5)
    starts = [mg.start(rng) for _ in range(6)]
    return Game(mg, objective, agents, starts, horizon=24,
                clock=lambda s: Microgrid.clock(s["hour"] + 1))


def rule_policies(game: Game) -> dict:
    """Simple hand rules per unit: batteries discharge at the evening peak and charge at
    night, generators run at the peak, demand response sheds when the load is high."""

    def bat(name):
        return lambda s, tot: {name: 15.0 if 17 <= s["hour"] < 21 else -10.0
                               if s["hour"] < 6 else 0.0}

    return {
        "bat": bat("bat"), "bat2": bat("bat2"),
        "gen": lambda s, tot: {"gen": 20.0 if s["net"] > 40 else 0.0},
        "gen2": lambda s, tot: {"gen2": 10.0 if s["net"] > 30 else 0.0},
        "dr": lambda s, tot: {"dr": 10.0 if s["net"] > 45 else 0.0},
    }


def test_five_agents_sampled_within_5_percent_of_exact_and_efficient():
    mg = Microgrid(batteries=2, generators=2)
    agents = {a: [a] for a in ("bat", "bat2", "gen", "gen2", "dr")}
    game = microgrid_game(mg, agents)
    value = CoalitionValue(game, rule_policies(game), game.starts, seed=0)
    exact = shapley(value, list(agents))
    assert exact.method == "exact" and exact.coalitions == 32
    assert exact.gap == pytest.approx(0.0, abs=1e-9)
    sampled = shapley(value, list(agents), exact_max=4, permutations=200, seed=3)
    assert sampled.method.startswith("sampled")
    assert sampled.gap == pytest.approx(0.0, abs=1e-9)
    spread = sum(abs(v) for v in exact.values.values())
    worst = max(abs(sampled.values[a] - exact.values[a]) for a in agents)
    assert worst <= 0.05 * spread


def test_coalition_values_use_common_random_numbers():
    mg = Microgrid()
    game = microgrid_game(mg, {"bat": ["bat"], "gen": ["gen"], "dr": ["dr"]})
    policies = rule_policies(game)
    a = CoalitionValue(game, policies, game.starts, seed=0)
    b = CoalitionValue(game, policies, game.starts, seed=0)
    assert a(frozenset({"gen"})) == b(frozenset({"gen"}))
    # the default (nobody acts) and the full coalition differ, and credit adds up
    c = credit(game, policies, game.starts)
    assert c.v_all != c.v_none
    assert sum(c.values.values()) == pytest.approx(c.v_all - c.v_none)


def test_credit_on_the_twin_is_efficient():
    from tests.cooperate.test_cooperate import LEVELS, cancer_twin, objective

    tw = cancer_twin(patients=8, steps=20)
    game = twin_game(tw, objective(), {"chemo": ["ca"], "radio": ["ra"]}, horizon=6,
                     levels=LEVELS)
    policies = {"chemo": lambda s, tot: {"ca": 5.0}, "radio": lambda s, tot: {"ra": 2.0}}
    c = credit(game, policies, game.starts[:3])
    assert c.method == "exact"
    assert sum(c.values.values()) == pytest.approx(c.v_all - c.v_none)
    assert c.values["chemo"] != 0.0 and c.values["radio"] != 0.0
