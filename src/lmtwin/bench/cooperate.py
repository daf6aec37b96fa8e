"""``lmtwin bench cooperate``: agents trained only on the twin, scored on the true system.

Two systems. Cancer (lung-cancer PKPD): a chemo agent and a radio agent. Microgrid: a
battery, a generator and demand response under a tariff and an emission cap, with crisis
weights on and off and one drift of the true system mid-run. Every method is scored on
the TRUE simulator over the same held-out episodes (same starts, same seeds); the
intervals are 95% t-intervals over those episodes (each episode's value averaged over
the training seeds first); paired differences use the same episodes. Settings (learning
rate, exploration, bins, beta) were fixed before the scored run and checked on
validation seeds 500+ (``--quick`` runs score there), never on the scored seeds 1000+.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmtwin.cooperate import (
    Crisis,
    Discretiser,
    Game,
    Objective,
    Policy,
    QLearner,
    Shaping,
    Step,
    Term,
    TwinParallelEnv,
    budget,
    cost,
    credit,
    explore,
    greedy,
    level,
    train,
    twin_game,
    uncertainty,
)
from lmtwin.predictors import LocalRidge, Persistence
from lmtwin.systems.cancer import CANCER_VARIABLES, simulate_patients
from lmtwin.systems.cancer_control import CancerSystem, ProtocolPolicy
from lmtwin.systems.microgrid import Microgrid, tariff
from lmtwin.twin import Twin

FAST = ["persistence", "numeric"]
CANCER_AGENTS = {"chemo": ["ca"], "radio": ["ra"]}
CANCER_LEVELS = {"ca": [0.0, 5.0], "ra": [0.0, 2.0]}
GRID_AGENTS = {"battery": ["bat"], "generator": ["gen"], "demand": ["dr"]}
GRID_OBSERVE = ["hour", "net", "soc", "co2"]
# bins at the system's own thresholds: tariff periods and solar hours; the grid connection
# (35 kW) and the crisis limit (40 kW); the battery reserve; the emission cap (300 kg)
GRID_BINS = Discretiser([np.array([6.0, 10.0, 14.0, 17.0, 21.0]), np.array([20.0, 35.0, 45.0]),
                         np.array([10.0, 25.0, 45.0]), np.array([150.0, 250.0, 300.0])])
GRID_LEVELS = {"bat": [-15.0, 0.0, 15.0], "gen": [0.0, 15.0, 30.0], "dr": [0.0, 10.0]}
COOPERATIVE = Shaping(1.0, 0.5)
INDEPENDENT = Shaping(1.0, 0.0)


@dataclass
class Sizes:
    """How big the run is (stated in the report)."""

    cancer_twin_patients: int = 60
    cancer_horizon: int = 60
    cancer_episodes: int = 150
    grid_twin_days: int = 80
    grid_episodes: int = 200
    seeds: int = 3
    held_out: int = 50
    drift_days: int = 30
    drift_episodes: int = 100
    credit_episodes: int = 10
    optimiser: bool = True
    five_agent_days: int = 60
    explore_episodes: int = 10
    eval_seed: int = 1000  # scored episodes; development runs use 500 (validation)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(cancer_twin_patients=15, cancer_horizon=30, cancer_episodes=40,
                   grid_twin_days=20, grid_episodes=60, seeds=2, held_out=8, drift_days=5,
                   drift_episodes=30, credit_episodes=3, optimiser=False, five_agent_days=15,
                   eval_seed=500)

    @classmethod
    def tiny(cls) -> Sizes:
        """For the test of the bench itself: seconds, not minutes."""
        return cls(cancer_twin_patients=4, cancer_horizon=4, cancer_episodes=2,
                   grid_twin_days=3, grid_episodes=2, seeds=2, held_out=3, drift_days=1,
                   drift_episodes=2, credit_episodes=1, optimiser=False, five_agent_days=2,
                   explore_episodes=1, eval_seed=500)


# --- helpers -------------------------------------------------------------------------
def stream(twin: Twin, episodes: Sequence[Sequence[Mapping[str, float]]], prefix: str) -> None:
    """Observe episodes, each transition predicted first (scored: the twin's Hedge
    weights and conformal intervals learn from them, prequentially)."""
    states = set(twin.schema.states) | set(twin.schema.contexts)
    actions = set(twin.schema.actions)
    for e, rows in enumerate(episodes):
        name = f"{prefix}{e}"
        for t, row in enumerate(rows):
            if t:
                prev = rows[t - 1]
                twin.predict({k: v for k, v in prev.items() if k in states},
                             {k: v for k, v in prev.items() if k in actions}, episode=name,
                             predictors=FAST)
            twin.observe(dict(row), episode=name, t=float(t))


def ci95(values: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    """Mean and 95% t-interval."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    m = float(x.mean())
    if len(x) < 2:
        return m, m, m
    h = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return m, m - h, m + h


def decay_for(episodes: int, start: float = 0.3, end: float = 0.02) -> float:
    """Per-episode exploration decay reaching ``end`` at 80% of the episodes."""
    return float((end / start) ** (1.0 / max(1.0, 0.8 * episodes)))


def learners_for(game: Game, disc: Discretiser, episodes: int, seed: int) -> dict[str, QLearner]:
    return {a: QLearner(disc, len(game.choices(a)), lr=0.1, gamma=0.97, epsilon=0.3,
                        decay=decay_for(episodes), seed=1000 * seed + i)
            for i, a in enumerate(game.agents)}


@dataclass
class Trained:
    """A method's learners per training seed, seconds per seed and returns per episode."""

    learners: list[dict[str, QLearner]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    returns: list[list[float]] = field(default_factory=list)


def fit(game: Game, disc: Discretiser, episodes: int, seeds: int,
        tick: Callable[[str], None], label: str) -> Trained:
    out = Trained()
    for s in range(seeds):
        learners = learners_for(game, disc, episodes, s)
        res = train(TwinParallelEnv(game), learners, episodes, seed=100_000 * (s + 1))
        out.learners.append(learners)
        out.seconds.append(res.seconds)
        out.returns.append(res.returns)
        tick(f"{label} seed {s}: {res.seconds:.0f} s")
    return out


def play_all(game: Game, policies: Sequence[Mapping[str, Policy]],
             starts: Sequence[Mapping[str, float]], seed: int,
             metrics: Callable[[Any], dict[str, float]]) -> dict[str, Any]:
    """Each policy set (one per training seed) on every start; per-start values are
    averaged over the sets. Returns values per start and metric means."""
    values = np.zeros((len(policies), len(starts)))
    rows: list[dict[str, float]] = []
    for i, pol in enumerate(policies):
        for j, s in enumerate(starts):
            ep = game.play(pol, s, seed + j)
            values[i, j] = ep.value
            rows.append(metrics(ep))
    per_start = values.mean(axis=0)
    m, lo, hi = ci95(per_start)
    out: dict[str, Any] = {"mean": m, "lower": lo, "upper": hi,
                           "per_start": per_start.tolist(),
                           "per_seed": values.mean(axis=1).tolist()}
    for k in rows[0] if rows else []:
        out[k] = float(np.mean([r[k] for r in rows]))
    return out


def paired(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    m, lo, hi = ci95(np.asarray(a["per_start"]) - np.asarray(b["per_start"]))
    return {"mean": m, "lower": lo, "upper": hi}


# --- cancer --------------------------------------------------------------------------
def cancer_objective() -> Objective:
    """Per day: -v'/100 (tumour, physical, both agents); -0.05 per mg of chemo and -0.1
    per Gy of radio (toxicity, abstract, the giver); -1 per mg / Gy beyond a budget of
    150 mg chemo and 60 Gy radio (abstract); -sigma_v/100, the twin's uncertainty
    (computational, zero on the true system)."""
    return Objective([
        level("v", scale=100.0, name="tumour volume"),
        cost({"ca": 0.05}, agents=["chemo"], name="chemo toxicity"),
        cost({"ra": 0.1}, agents=["radio"], name="radio toxicity"),
        budget("ca", 150.0, agents=["chemo"], name="chemo budget"),
        budget("ra", 60.0, agents=["radio"], name="radio budget"),
        uncertainty(["v"], scale=100.0),
    ])


def cancer_metrics(ep: Any) -> dict[str, float]:
    return {"final_volume": ep.states[-1]["v"],
            "chemo_mg": sum(a["ca"] for a in ep.actions),
            "radio_gy": sum(a["ra"] for a in ep.actions)}


class PlanPolicy:
    """Replays an open-loop plan, one step per call (``reset`` rewinds)."""

    def __init__(self, plan: Sequence[Mapping[str, float]], names: Sequence[str]) -> None:
        self.plan, self.names, self.t = list(plan), list(names), 0

    def reset(self, seed: int) -> None:
        self.t = 0

    def __call__(self, state: Mapping[str, float], totals: Mapping[str, float]
                 ) -> dict[str, float]:
        row = self.plan[min(self.t, len(self.plan) - 1)]
        self.t += 1
        return {k: float(row[k]) for k in self.names}


def cancer(sizes: Sizes, tick: Callable[[str], None]) -> dict[str, Any]:
    started = time.perf_counter()
    twin = Twin("cancer", variables=CANCER_VARIABLES, predictors=[Persistence(), LocalRidge()])
    patients = simulate_patients(sizes.cancer_twin_patients, seed=100, steps=60)
    stream(twin, [p.rows() for p in patients], "p")
    tick(f"cancer twin: {len(twin.retriever)} transitions")
    objective = cancer_objective()

    def game(shaping: Shaping) -> Game:
        return twin_game(twin, objective, CANCER_AGENTS, sizes.cancer_horizon, shaping,
                         CANCER_LEVELS, observe_totals=["ca", "ra"], predictors=FAST)

    coop, indep = game(COOPERATIVE), game(INDEPENDENT)
    disc = Discretiser.from_samples(explore(coop, sizes.explore_episodes, seed=7), [8, 3, 3, 3])
    truth = CancerSystem()
    true_coop = coop.with_dynamics(truth)
    seed0 = sizes.eval_seed
    rng = np.random.default_rng(seed0)
    starts = [truth.start(rng) for _ in range(sizes.held_out)]
    results: dict[str, Any] = {"methods": {}, "training_seconds": {}}
    methods = results["methods"]

    trained = {
        "cooperative (beta 0.5)": fit(coop, disc, sizes.cancer_episodes, sizes.seeds, tick,
                                      "cancer cooperative"),
        "independent (beta 0)": fit(indep, disc, sizes.cancer_episodes, sizes.seeds, tick,
                                    "cancer independent"),
        "cooperative, trained on the true simulator": fit(
            true_coop, disc, sizes.cancer_episodes, sizes.seeds, tick, "cancer on truth"),
    }
    for name, tr in trained.items():
        methods[name] = play_all(true_coop, [greedy(coop, lr) for lr in tr.learners], starts,
                                 seed0, cancer_metrics)
        results["training_seconds"][name] = tr.seconds
    results["returns"] = {k: v.returns for k, v in trained.items()}
    protocol = {"chemo": ProtocolPolicy(("ca",)), "radio": ProtocolPolicy(("ra",))}
    methods["protocol policy"] = play_all(true_coop, [protocol], starts, seed0, cancer_metrics)
    methods["no treatment"] = play_all(true_coop, [{}], starts, seed0, cancer_metrics)
    if sizes.optimiser:
        methods["intervene optimiser (open-loop plan on the twin)"] = cancer_optimiser(
            twin, true_coop, starts, sizes, tick)
    results["paired"] = {
        "cooperative - independent": paired(methods["cooperative (beta 0.5)"],
                                            methods["independent (beta 0)"]),
        "cooperative - protocol": paired(methods["cooperative (beta 0.5)"],
                                         methods["protocol policy"]),
        "trained on truth - trained on twin": paired(
            methods["cooperative, trained on the true simulator"],
            methods["cooperative (beta 0.5)"]),
    }
    # Shapley credit of the cooperative agents (first seed), on the twin and on the truth
    pol = greedy(coop, trained["cooperative (beta 0.5)"].learners[0])
    results["credit"] = {
        where: _credit(credit(g, pol, starts[:sizes.credit_episodes], seed=2000))
        for where, g in (("twin", coop), ("true simulator", true_coop))
    }
    results["seconds"] = time.perf_counter() - started
    return results


def cancer_optimiser(twin: Twin, true_game: Game, starts: Sequence[Mapping[str, float]],
                     sizes: Sizes, tick: Callable[[str], None]) -> dict[str, Any]:
    """The intervene stage's CMA-ES plan, made once per patient on the twin (open loop,
    doses held over 15-day blocks), with the same costs and budgets as the objective."""
    from lmtwin.intervene import Constraints, optimise
    from lmtwin.intervene import Objective as Cost

    c = Cost({"v": 0.01}, action_costs={"ca": 0.05, "ra": 0.1}, aggregate="sum")
    limits = Constraints(budget={"ca": 150.0, "ra": 60.0})
    policies: list[dict[str, Policy]] = []
    t0 = time.perf_counter()
    for j, s in enumerate(starts):
        plan, _ = optimise(twin, s, c, sizes.cancer_horizon, limits, n_paths=4, popsize=8,
                           iterations=6, block=min(15, sizes.cancer_horizon), seed=j,
                           predictors=FAST)
        policies.append({"chemo": PlanPolicy(plan.plan, ["ca"]),
                         "radio": PlanPolicy(plan.plan, ["ra"])})
    tick(f"optimiser: {time.perf_counter() - t0:.0f} s for {len(starts)} plans")
    values = np.zeros(len(starts))
    rows = []
    for j, s in enumerate(starts):
        ep = true_game.play(policies[j], s, sizes.eval_seed + j)
        values[j] = ep.value
        rows.append(cancer_metrics(ep))
    m, lo, hi = ci95(values)
    out: dict[str, Any] = {"mean": m, "lower": lo, "upper": hi, "per_start": values.tolist(),
                           "per_seed": [m]}
    for k in rows[0]:
        out[k] = float(np.mean([r[k] for r in rows]))
    return out


# --- microgrid -----------------------------------------------------------------------
def grid_objective(mg: Microgrid, dynamic: bool) -> Objective:
    """Per hour: -3 per kW unserved (physical, all), -0.1 per kWh of battery below a 10 kWh
    reserve (physical, battery); the grid bill at the tariff, 0.03 credit per kW exported
    (abstract, all), fuel 0.28 per kWh (generator), discomfort 0.12 per kW shed (demand),
    0.5 per kg of CO2 beyond a 300 kg daily cap (abstract, all); battery wear 0.01 per kW
    and the twin's uncertainty 0.05 per kW of sigma_net (computational). Crisis weights
    (3, 1, 1) while the net load exceeds 40 kW or the battery holds under 8 kWh."""

    def unserved(s: Step) -> float:
        return -3.0 * mg.unserved(s.state, s.action)

    def bill(s: Step) -> float:
        imp = min(mg.grid(s.state, s.action), mg.grid_cap)
        return -tariff(s.state["hour"]) * max(0.0, imp) + 0.03 * max(0.0, -imp)

    def cap(s: Step) -> float:
        return -0.5 * (max(0.0, s.next_state["co2"] - 300.0) - max(0.0, s.state["co2"] - 300.0))

    terms = [
        Term("unserved load", "physical", unserved, ("net", "soc", "bat", "gen", "dr")),
        Term("battery reserve", "physical",
             lambda s: -0.1 * max(0.0, 10.0 - s.next_state["soc"]), ("soc",), ("battery",)),
        Term("grid bill", "abstract", bill, ("net", "hour")),
        cost({"gen": 0.28}, agents=["generator"], name="fuel"),
        cost({"dr": 0.12}, agents=["demand"], name="discomfort"),
        Term("emission cap", "abstract", cap, ("co2",)),
        Term("battery wear", "computational", lambda s: -0.01 * abs(s.action["bat"]), ("bat",),
             ("battery",)),
        uncertainty(["net"], scale=20.0),
    ]
    weights: Any = Crisis({"net": (None, 40.0), "soc": (8.0, None)}, (1, 1, 1), (3, 1, 1)) \
        if dynamic else (1.0, 1.0, 1.0)
    return Objective(terms, weights)


def grid_metrics(mg: Microgrid) -> Callable[[Any], dict[str, float]]:
    def metrics(ep: Any) -> dict[str, float]:
        pairs = list(zip(ep.states[:-1], ep.actions, strict=True))
        return {
            "unserved_kwh": sum(mg.unserved(s, a) for s, a in pairs),
            "bill": sum(tariff(s["hour"]) * max(0.0, min(mg.grid(s, a), mg.grid_cap))
                        for s, a in pairs),
            "co2_kg": ep.states[-1]["co2"],
        }

    return metrics


def rule_policies() -> dict[str, Policy]:
    """A hand-written operator: charge the battery at night and discharge it in the
    evening peak, run the generator half-way when the net load passes 40 kW, shed load
    above 45 kW."""
    return {
        "battery": lambda s, tot: {"bat": 15.0 if 17 <= s["hour"] < 21 else
                                   -15.0 if s["hour"] < 6 else 0.0},
        "generator": lambda s, tot: {"gen": 15.0 if s["net"] > 40.0 else 0.0},
        "demand": lambda s, tot: {"dr": 10.0 if s["net"] > 45.0 else 0.0},
    }


def clock(s: Mapping[str, float]) -> dict[str, float]:
    return Microgrid.clock(s["hour"] + 1.0)


def random_operator(mg: Microgrid) -> Callable[[Mapping[str, float], np.random.Generator],
                                              dict[str, float]]:
    """Exploratory operation of the real grid (what the twin learns from): the levels the
    agents may choose, at random."""

    def policy(state: Mapping[str, float], rng: np.random.Generator) -> dict[str, float]:
        return {k: float(rng.choice(v)) for k, v in GRID_LEVELS.items()}

    return policy


def grid_game(twin: Twin, mg: Microgrid, shaping: Shaping, dynamic: bool) -> Game:
    return twin_game(twin, grid_objective(mg, dynamic), GRID_AGENTS, 24, shaping, GRID_LEVELS,
                     clock=clock, predictors=FAST, observe=GRID_OBSERVE)


def microgrid(sizes: Sizes, tick: Callable[[str], None]) -> dict[str, Any]:
    started = time.perf_counter()
    mg = Microgrid()
    twin = Twin("microgrid", variables=mg.variables(), predictors=[Persistence(), LocalRidge()])
    stream(twin, mg.episodes(sizes.grid_twin_days, random_operator(mg), seed=200), "d")
    tick(f"microgrid twin: {len(twin.retriever)} transitions")

    games = {
        "cooperative (beta 0.5), crisis weights": grid_game(twin, mg, COOPERATIVE, True),
        "independent (beta 0), crisis weights": grid_game(twin, mg, INDEPENDENT, True),
        "cooperative (beta 0.5), fixed weights": grid_game(twin, mg, COOPERATIVE, False),
    }
    main = games["cooperative (beta 0.5), crisis weights"]
    disc = GRID_BINS
    true_main = main.with_dynamics(mg)
    true_fixed = games["cooperative (beta 0.5), fixed weights"].with_dynamics(mg)
    seed0 = sizes.eval_seed
    rng = np.random.default_rng(seed0)
    starts = [mg.start(rng) for _ in range(sizes.held_out)]
    metrics = grid_metrics(mg)
    results: dict[str, Any] = {"methods": {}, "training_seconds": {}, "fixed_weight_score": {}}
    trained = {name: fit(g, disc, sizes.grid_episodes, sizes.seeds, tick, f"grid {name}")
               for name, g in games.items()}
    trained["cooperative, crisis weights, trained on the true simulator"] = fit(
        true_main, disc, sizes.grid_episodes, sizes.seeds, tick, "grid on truth")
    for name, tr in trained.items():
        pols = [greedy(main, lr) for lr in tr.learners]
        results["methods"][name] = play_all(true_main, pols, starts, seed0, metrics)
        results["fixed_weight_score"][name] = play_all(true_fixed, pols, starts, seed0,
                                                       metrics)["mean"]
        results["training_seconds"][name] = tr.seconds
    results["returns"] = {k: v.returns for k, v in trained.items()}
    fixed: dict[str, list[dict[str, Policy]]] = {"hand-written rules": [rule_policies()],
                                                 "no action": [{}]}
    for name, pset in fixed.items():
        results["methods"][name] = play_all(true_main, pset, starts, seed0, metrics)
        results["fixed_weight_score"][name] = play_all(true_fixed, pset, starts, seed0,
                                                       metrics)["mean"]
    m = results["methods"]
    results["paired"] = {
        "cooperative - independent": paired(m["cooperative (beta 0.5), crisis weights"],
                                            m["independent (beta 0), crisis weights"]),
        "cooperative - hand-written": paired(m["cooperative (beta 0.5), crisis weights"],
                                             m["hand-written rules"]),
        "crisis - fixed weights": paired(m["cooperative (beta 0.5), crisis weights"],
                                         m["cooperative (beta 0.5), fixed weights"]),
        "trained on truth - trained on twin": paired(
            m["cooperative, crisis weights, trained on the true simulator"],
            m["cooperative (beta 0.5), crisis weights"]),
    }
    pol = greedy(main, trained["cooperative (beta 0.5), crisis weights"].learners[0])
    results["credit"] = {
        where: _credit(credit(g, pol, starts[:sizes.credit_episodes], seed=2000))
        for where, g in (("twin", main), ("true simulator", true_main))
    }
    results["drift"] = grid_drift(twin, mg, main, trained["cooperative (beta 0.5), crisis "
                                                          "weights"], sizes, tick)
    results["seconds"] = time.perf_counter() - started
    return results


def grid_drift(twin: Twin, mg: Microgrid, game: Game, before: Trained, sizes: Sizes,
               tick: Callable[[str], None]) -> dict[str, Any]:
    """Mid-run the true load grows by 30% (a new building). The real grid, run by the
    agents (greedy, 10% exploration), feeds ``drift_days`` days to the twin; the agents
    then either stop learning (frozen) or go on learning on the updated twin; both are
    scored on the drifted true system."""
    drifted = Microgrid(scale=1.3)
    learners = [{a: _copy(q) for a, q in lr.items()} for lr in before.learners]
    pols = greedy(game, learners[0])
    explore_rng = np.random.default_rng(3)

    def operate(state: Mapping[str, float], rng: np.random.Generator) -> dict[str, float]:
        if explore_rng.uniform() < 0.1:
            return random_operator(drifted)(state, rng)
        out: dict[str, float] = {}
        for p in pols.values():
            out.update(p(state, {}))
        return out

    n_before = len(twin.retriever)
    stream(twin, drifted.episodes(sizes.drift_days, operate, seed=300), "drift")
    tick(f"drift: the twin took in {len(twin.retriever) - n_before} transitions")
    seconds = []
    for s, lr in enumerate(learners):
        for q in lr.values():
            q.epsilon = 0.15
            q.decay = decay_for(sizes.drift_episodes, 0.15)
        res = train(TwinParallelEnv(game), lr, sizes.drift_episodes, seed=900_000 + 1000 * s)
        seconds.append(res.seconds)
    tick(f"drift: agents went on learning ({np.median(seconds):.0f} s a seed)")
    true_drifted = game.with_dynamics(drifted)
    seed0 = sizes.eval_seed + 500
    rng = np.random.default_rng(seed0)
    starts = [drifted.start(rng) for _ in range(sizes.held_out)]
    metrics = grid_metrics(drifted)
    out: dict[str, Any] = {
        "frozen (trained before the drift)": play_all(
            true_drifted, [greedy(game, lr) for lr in before.learners], starts, seed0, metrics),
        "kept learning on the updated twin": play_all(
            true_drifted, [greedy(game, lr) for lr in learners], starts, seed0, metrics),
        "hand-written rules": play_all(true_drifted, [rule_policies()], starts, seed0, metrics),
        "no action": play_all(true_drifted, [{}], starts, seed0, metrics),
    }
    out["paired: kept learning - frozen"] = paired(out["kept learning on the updated twin"],
                                                   out["frozen (trained before the drift)"])
    out["seconds_continued"] = seconds
    return out


def _credit(c: Any) -> dict[str, Any]:
    return {**asdict(c), "gap": c.gap}


def _copy(q: QLearner) -> QLearner:
    new = QLearner(q.discretiser, q.n_actions, q.lr, q.gamma, q.epsilon, q.decay,
                   q.epsilon_min, q.seed + 7)
    new.q_ = q.q_.copy()
    new.episodes_ = q.episodes_
    return new


# --- Shapley with five agents ----------------------------------------------------------
def five_agents(sizes: Sizes, tick: Callable[[str], None]) -> dict[str, Any]:
    """Exact and sampled Shapley credit of five hand-written units (two batteries, two
    generators, demand response) on the twin of a five-unit microgrid."""
    mg = Microgrid(batteries=2, generators=2)
    twin = Twin("microgrid5", variables=mg.variables(), predictors=[Persistence(), LocalRidge()])
    stream(twin, mg.episodes(sizes.five_agent_days, seed=400), "d")
    agents = {"bat": ["bat"], "bat2": ["bat2"], "gen": ["gen"], "gen2": ["gen2"], "dr": ["dr"]}
    objective = Objective([
        Term("unserved load", "physical", lambda s: -3.0 * mg.unserved(s.state, s.action),
             ("net",)),
        Term("grid bill", "abstract",
             lambda s: -tariff(s.state["hour"]) * max(0.0, min(mg.grid(s.state, s.action),
                                                                mg.grid_cap)), ("net",)),
        cost({"gen": 0.28, "gen2": 0.33, "dr": 0.12}, name="fuel and discomfort"),
    ])
    game = twin_game(twin, objective, agents, 24, clock=clock, predictors=FAST,
                     observe=GRID_OBSERVE)

    def battery(name: str) -> Policy:
        return lambda s, tot: {name: 15.0 if 17 <= s["hour"] < 21 else
                               -15.0 if s["hour"] < 6 else 0.0}

    policies = {"bat": battery("bat"), "bat2": battery("bat2"),
                "gen": lambda s, tot: {"gen": 20.0 if s["net"] > 40 else 0.0},
                "gen2": lambda s, tot: {"gen2": 10.0 if s["net"] > 30 else 0.0},
                "dr": lambda s, tot: {"dr": 10.0 if s["net"] > 45 else 0.0}}
    from lmtwin.cooperate import CoalitionValue, shapley

    rng = np.random.default_rng(2500)
    starts = [mg.start(rng) for _ in range(sizes.credit_episodes)]
    value = CoalitionValue(game, policies, starts, seed=2500)
    t0 = time.perf_counter()
    exact = shapley(value, list(agents))
    t_exact = time.perf_counter() - t0
    sampled = {}
    spread = sum(abs(v) for v in exact.values.values())
    for m in (20, 50, 100, 200):
        est = shapley(value, list(agents), exact_max=4, permutations=m, seed=5)
        worst = max(abs(est.values[a] - exact.values[a]) for a in agents)
        sampled[m] = {"values": est.values, "max_error_over_sum_abs": worst / spread,
                      "efficiency_gap": est.gap}
    tick(f"five agents: exact Shapley in {t_exact:.0f} s")
    return {"exact": _credit(exact), "sampled": sampled, "seconds_exact": t_exact,
            "episodes_per_coalition": len(starts)}


# --- run and report ------------------------------------------------------------------
def run(sizes: Sizes, out: Path, tick: Callable[[str], None] = print,
        only: Sequence[str] = ("cancer", "microgrid", "five")) -> dict[str, Any]:
    """Run the bench; write ``cooperate.json``, ``cooperate.md`` and PNGs into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict[str, Any] = {}
    saved = out / "cooperate.json"
    if set(only) != {"cancer", "microgrid", "five"} and saved.exists():
        results = json.loads(saved.read_text())  # a rerun of some parts keeps the others
    results.update({"sizes": asdict(sizes), "date": time.strftime("%Y-%m-%d"),
                    "cores": _cores()})
    parts: dict[str, Callable[[Sizes, Callable[[str], None]], dict[str, Any]]] = {
        "cancer": cancer, "microgrid": microgrid, "five_agents": five_agents}
    for key, part in parts.items():
        if key.split("_")[0] in only:
            results[key] = part(sizes, tick)
            results["seconds"] = time.perf_counter() - started
            # saved after each part, so a failure later loses nothing measured
            (out / "cooperate.json").write_text(json.dumps(results, indent=1, default=float))
    plots(results, out)
    (out / "cooperate.md").write_text(report(results))
    return results


def rewrite(out: Path) -> list[Path]:
    """Render ``cooperate.md`` and the PNGs again from ``out/cooperate.json``."""
    results = json.loads((out / "cooperate.json").read_text())
    written = plots(results, out)
    (out / "cooperate.md").write_text(report(results))
    return [out / "cooperate.md", *written]


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else -1


def report(results: Mapping[str, Any]) -> str:
    from lmtwin.bench import cooperate_report

    return cooperate_report.markdown(results)


def plots(results: Mapping[str, Any], out: Path) -> list[Path]:
    from lmtwin.bench import cooperate_report

    return cooperate_report.plots(results, out)


__all__ = ["Sizes", "run"]
