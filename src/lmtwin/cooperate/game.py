"""The core shared by the environments, the credit and the benchmark: who owns which
action, what a step costs, and episodes on any dynamics (the twin or a true system).

Each agent owns a subset of the action variables; no variable has two owners; actions
that nobody owns, and the actions of agents outside a coalition, follow the default
policy, whose every answer is checked against the schema's bounds.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from lmtwin.cooperate.dynamics import Dynamics
from lmtwin.cooperate.objective import Evaluation, Objective, Step
from lmtwin.cooperate.shaping import Shaping
from lmtwin.errors import InvalidValue, OwnershipError

Policy = Callable[[Mapping[str, float], Mapping[str, float]], Mapping[str, float]]
"""A policy maps the current state and the episode's action totals so far to values of
its agent's action variables."""
DefaultPolicy = Callable[[Mapping[str, float]], Mapping[str, float]]


@dataclass
class Outcome:
    """One step played: the next state, its score, raw and shaped rewards per agent."""

    next_state: dict[str, float]
    evaluation: Evaluation
    rewards: dict[str, float]
    shaped: dict[str, float]
    action: dict[str, float]
    sigma: dict[str, float] = field(default_factory=dict)


@dataclass
class Episode:
    """A played episode: objective total, per-agent raw reward totals, the states."""

    value: float
    rewards: dict[str, float]
    states: list[dict[str, float]]
    actions: list[dict[str, float]]


class Game:
    """Agents acting on a dynamics under one objective.

    Args:
        dynamics: the twin (``TwinDynamics``) or a true system with the same schema.
        objective: scores each step and gives each agent its reward.
        agents: agent name -> the action variables it owns.
        starts: initial states to reset from, or a function returning them (the twin's
            stored episode starts, which grow as it observes).
        horizon: steps per episode.
        shaping: how agents' rewards are shared (None: independent).
        levels: action variable -> the values an agent may choose (discrete actions, for
            tabular learners and DQN); None for continuous actions within the bounds.
        default: what actions not taken by an agent do: fixed values or a policy of the
            state (None: 0, or the lower bound when 0 is out of bounds).
        observe: the variables agents observe (None: every state and context variable).
        observe_totals: action variables whose running sum over the episode is appended
            to the observation (what a dose budget needs to be learnable).
        clock: context values after a step, from the state before it (e.g. the hour
            advancing); None keeps contexts as they are.
    """

    def __init__(
        self,
        dynamics: Dynamics,
        objective: Objective,
        agents: Mapping[str, Sequence[str]],
        starts: Sequence[Mapping[str, float]] | Callable[[], Sequence[Mapping[str, float]]],
        horizon: int = 30,
        shaping: Shaping | None = None,
        levels: Mapping[str, Sequence[float]] | None = None,
        default: Mapping[str, float] | DefaultPolicy | None = None,
        observe: Sequence[str] | None = None,
        observe_totals: Sequence[str] = (),
        clock: Callable[[Mapping[str, float]], Mapping[str, float]] | None = None,
    ) -> None:
        self.dynamics = dynamics
        schema = dynamics.schema
        self.agents: dict[str, tuple[str, ...]] = check_agents(agents, schema.actions,
                                                                list(schema.variables))
        objective.check(schema, self.agents)
        self.objective = objective
        self.shaping = shaping if shaping is not None else Shaping()
        self.shaping.check(self.agents)
        if horizon < 1:
            raise ValueError("horizon must be at least 1")
        self.horizon = int(horizon)
        self.actions = schema.actions
        self.bounds = {
            a: (schema.variables[a].lower, schema.variables[a].upper) for a in self.actions
        }
        self.observe = list(observe) if observe is not None else [
            n for n in schema.variables if schema.variables[n].role != "action"
        ]
        for n in self.observe:
            if n not in schema or schema.variables[n].role == "action":
                raise OwnershipError(f"agents can observe states and contexts; {n!r} is not one")
        self.observe_totals = list(observe_totals)
        for n in self.observe_totals:
            if n not in self.actions:
                raise OwnershipError(f"observe_totals names {n!r}, which is not an action")
        self.clock = clock
        self.levels = None if levels is None else self._check_levels(levels)
        self._starts = starts
        first = self.starts
        if not first:
            raise ValueError("a game needs at least one start state")
        self._default = default
        self.default_action(first[0])  # a bad default is refused now, not mid-run

    # --- actions ---------------------------------------------------------------------
    def _check_levels(self, levels: Mapping[str, Sequence[float]]) -> dict[str, list[float]]:
        owned = [v for vs in self.agents.values() for v in vs]
        missing = [v for v in owned if v not in levels]
        if missing:
            raise InvalidValue("levels", sorted(levels), f"no levels for {missing}")
        out = {}
        for v in owned:
            values = [float(x) for x in levels[v]]
            if not values:
                raise InvalidValue(v, values, "needs at least one level")
            for x in values:
                self._check_value(v, x)
            out[v] = values
        return out

    def _check_value(self, name: str, x: float) -> float:
        lo, hi = self.bounds[name]
        if not math.isfinite(x):
            raise InvalidValue(name, x, "not a finite number")
        if (lo is not None and x < lo) or (hi is not None and x > hi):
            raise InvalidValue(name, x, f"outside the bounds [{lo}, {hi}]")
        return float(x)

    def choices(self, agent: str) -> list[dict[str, float]]:
        """The discrete joint actions of ``agent`` (every combination of its levels)."""
        if self.levels is None:
            raise InvalidValue("levels", None, "the game has continuous actions")
        names = self.agents[agent]
        return [dict(zip(names, combo, strict=True))
                for combo in itertools.product(*(self.levels[n] for n in names))]

    def default_action(self, state: Mapping[str, float]) -> dict[str, float]:
        """Every action variable's default in ``state``; out of bounds raises InvalidValue."""
        base = {}
        for a in self.actions:
            lo, hi = self.bounds[a]
            base[a] = float(np.clip(0.0, -np.inf if lo is None else lo,
                                    np.inf if hi is None else hi))
        given = self._default(state) if callable(self._default) else (self._default or {})
        for k, x in given.items():
            if k not in self.bounds:
                raise OwnershipError(f"the default policy sets {k!r}, which is not an action")
            base[k] = self._check_value(k, float(x))
        return base

    def joint(self, state: Mapping[str, float], chosen: Mapping[str, Mapping[str, float]]
              ) -> dict[str, float]:
        """The joint action: each agent in ``chosen`` sets its own variables, everything
        else follows the default policy."""
        action = self.default_action(state)
        for agent, values in chosen.items():
            owned = self.agents[agent]
            for k, x in values.items():
                if k not in owned:
                    raise OwnershipError(f"agent {agent!r} does not own {k!r}")
                action[k] = self._check_value(k, float(x))
        return action

    # --- play ------------------------------------------------------------------------
    def observation(self, state: Mapping[str, float],
                    totals: Mapping[str, float] | None = None) -> np.ndarray:
        """The observed variables, then the observed action totals."""
        extra = [(totals or {}).get(n, 0.0) for n in self.observe_totals]
        return np.array([state[n] for n in self.observe] + extra, dtype=np.float32)

    def step(self, state: Mapping[str, float], action: Mapping[str, float], t: int,
             totals: dict[str, float], rng: np.random.Generator) -> Outcome:
        """Advance one step; ``totals`` (each action's running sum) is updated in place."""
        nxt, sigma = self.dynamics.step(state, action, rng)
        merged = {**state, **nxt}
        if self.clock is not None:
            merged.update(self.clock(state))
        for k, x in action.items():
            totals[k] = totals.get(k, 0.0) + x
        ev = self.objective.evaluate(Step(state, action, merged, t, dict(totals), sigma))
        rewards = self.objective.rewards(ev, self.agents)
        return Outcome(merged, ev, rewards, self.shaping(rewards), dict(action), sigma)

    @property
    def starts(self) -> list[dict[str, float]]:
        """The start states as they are now."""
        return [dict(s) for s in (self._starts() if callable(self._starts) else self._starts)]

    def start(self, rng: np.random.Generator) -> dict[str, float]:
        starts = self._starts() if callable(self._starts) else self._starts
        return dict(starts[int(rng.integers(len(starts)))])

    def play(
        self,
        policies: Mapping[str, Policy],
        start: Mapping[str, float],
        seed: int,
        acting: Collection[str] | None = None,
    ) -> Episode:
        """One episode from ``start``: agents in ``acting`` (default: all with a policy)
        follow their policies, the others the default; ``seed`` fixes the noise."""
        acting = set(policies) if acting is None else set(acting)
        unknown = acting - set(self.agents)
        if unknown:
            raise OwnershipError(f"unknown agents {sorted(unknown)}")
        rng = np.random.default_rng(seed)
        for a in acting:
            reset = getattr(policies[a], "reset", None)
            if callable(reset):
                reset(seed)  # a policy with memory starts each episode afresh
        state = dict(start)
        totals: dict[str, float] = {}
        value, rewards = 0.0, dict.fromkeys(self.agents, 0.0)
        states, actions = [dict(state)], []
        for t in range(self.horizon):
            chosen = {a: policies[a](state, totals) for a in acting}
            action = self.joint(state, chosen)
            out = self.step(state, action, t, totals, rng)
            value += out.evaluation.value
            for a, r in out.rewards.items():
                rewards[a] += r
            state = out.next_state
            states.append(dict(state))
            actions.append(action)
        return Episode(value, rewards, states, actions)

    def with_dynamics(self, dynamics: Dynamics) -> Game:
        """The same game on other dynamics with the same variables (e.g. the true system,
        to score there what was learnt on the twin)."""
        return Game(dynamics, self.objective, self.agents, self._starts, self.horizon,
                    self.shaping, self.levels, self._default, self.observe,
                    self.observe_totals, self.clock)


def check_agents(agents: Mapping[str, Sequence[str]], actions: Sequence[str],
                 known: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Raise ``OwnershipError`` unless each agent owns at least one action variable and
    no variable has two owners."""
    if not agents:
        raise OwnershipError("give at least one agent")
    owner: dict[str, str] = {}
    out = {}
    for agent, names in agents.items():
        if not isinstance(agent, str) or not agent:
            raise OwnershipError(f"agent names must be non-empty strings, not {agent!r}")
        names = [names] if isinstance(names, str) else list(names)
        if not names:
            raise OwnershipError(f"agent {agent!r} owns no action variable")
        for n in names:
            if n not in actions:
                what = "an unknown variable" if n not in known else "not an action"
                raise OwnershipError(f"agent {agent!r} owns {n!r}, {what}; actions: "
                                     f"{', '.join(actions) or 'none'}")
            if n in owner:
                raise OwnershipError(f"{n!r} is owned by both {owner[n]!r} and {agent!r}")
            owner[n] = agent
        out[agent] = tuple(dict.fromkeys(names))
    return out
