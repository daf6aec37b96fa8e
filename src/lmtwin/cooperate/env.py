"""The twin as a Gymnasium environment and as a PettingZoo Parallel environment.

Both wrap a :class:`~lmtwin.cooperate.game.Game`: observations are the observed state
and context variables (a ``Box`` from the schema's bounds), actions are the agents' action
variables (``Discrete`` over the combinations of their levels, or a ``Box`` within their
bounds), resets draw a stored episode start (or ``options={"start": {...}}``), rewards
come from the objective. The Gymnasium env rewards one controller with ``O``; the
Parallel env rewards each agent with its shaped reward ``R_i'``. Both pass their
library's conformance checks (``check_env``, ``parallel_api_test``).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from lmtwin.cooperate.dynamics import FAST, TwinDynamics
from lmtwin.cooperate.game import DefaultPolicy, Game
from lmtwin.cooperate.objective import Objective
from lmtwin.cooperate.shaping import Shaping
from lmtwin.errors import DependencyNotInstalled, NotReady
from lmtwin.twin import Twin

try:
    import gymnasium
    from gymnasium import spaces
except ImportError:  # pragma: no cover - the extra is missing
    gymnasium = None  # type: ignore[assignment]
try:
    from pettingzoo import ParallelEnv
except ImportError:  # pragma: no cover - the extra is missing
    ParallelEnv = object


def _need(package: str) -> None:
    if package == "gymnasium" and gymnasium is None:
        raise DependencyNotInstalled("gymnasium", "agents")
    if package == "pettingzoo" and ParallelEnv is object:
        raise DependencyNotInstalled("pettingzoo", "agents")


def episode_starts(twin: Twin) -> list[dict[str, float]]:
    """The first observation of each stored episode that has every state variable."""
    states = twin.schema.states
    keep = set(states) | set(twin.schema.contexts)
    firsts: dict[str, dict[str, float]] = {}
    for obs in twin.history():
        if obs.episode not in firsts:
            firsts[obs.episode] = {k: v for k, v in obs.values.items() if k in keep}
    return [s for s in firsts.values() if all(k in s for k in states)]


class _Starts:
    """The twin's episode starts, read again when it has taken in new transitions (so a
    game resets from new episodes too)."""

    def __init__(self, twin: Twin) -> None:
        self.twin = twin
        self._seen = -1
        self._starts: list[dict[str, float]] = []

    def __call__(self) -> list[dict[str, float]]:
        n = len(self.twin.retriever)
        if n != self._seen:
            self._starts, self._seen = episode_starts(self.twin), n
        return self._starts


def twin_game(
    twin: Twin,
    objective: Objective,
    agents: Mapping[str, Sequence[str]] | None = None,
    horizon: int = 30,
    shaping: Shaping | None = None,
    levels: Mapping[str, Sequence[float]] | None = None,
    default: Mapping[str, float] | DefaultPolicy | None = None,
    observe_totals: Sequence[str] = (),
    clock: Callable[[Mapping[str, float]], Mapping[str, float]] | None = None,
    observe: Sequence[str] | None = None,
    predictors: Sequence[str] = FAST,
    noise: bool = True,
    min_transitions: int = 20,
) -> Game:
    """A :class:`Game` whose dynamics are the twin's rollouts (``agents`` None: one agent,
    "agent", owning every action). Raises ``NotReady`` when the twin holds fewer than
    ``min_transitions`` transitions or no episode start with every state variable."""
    n = len(twin.retriever)
    if n < min_transitions:
        raise NotReady(f"the twin holds {n} transitions; an environment needs "
                       f"{min_transitions} (observe more episodes first)")
    starts = _Starts(twin)
    if not starts():
        raise NotReady("no stored episode starts with every state variable")
    if agents is None:
        agents = {"agent": twin.schema.actions}
    return Game(TwinDynamics(twin, predictors, noise), objective, agents, starts, horizon,
                shaping, levels, default, observe, observe_totals, clock)


def _obs_space(game: Game) -> Any:
    schema = game.dynamics.schema
    low = [schema.variables[n].lower for n in game.observe]
    high = [schema.variables[n].upper for n in game.observe]
    for n in game.observe_totals:  # a running sum of an action: bounded below by 0 at most
        lo = schema.variables[n].lower
        low.append(0.0 if lo is not None and lo >= 0 else None)
        high.append(None)
    return spaces.Box(
        np.array([-np.inf if x is None else x for x in low], dtype=np.float32),
        np.array([np.inf if x is None else x for x in high], dtype=np.float32),
        dtype=np.float32,
    )


def _act_space(game: Game, names: Sequence[str], agents: Sequence[str]) -> Any:
    if game.levels is not None:
        n = 1
        for a in agents:
            n *= len(game.choices(a))
        return spaces.Discrete(n)
    lo, hi = [], []
    for k in names:
        low, high = game.bounds[k]
        if low is None or high is None:
            raise NotReady(f"continuous action {k!r} needs both bounds in the schema "
                           "(or give discrete levels)")
        lo.append(low)
        hi.append(high)
    return spaces.Box(np.array(lo, dtype=np.float32), np.array(hi, dtype=np.float32),
                      dtype=np.float32)


def _decode(game: Game, agents: Sequence[str], action: Any) -> dict[str, dict[str, float]]:
    """An action from the space -> each agent's variable values."""
    if game.levels is not None:
        combos = list(itertools.product(*(game.choices(a) for a in agents)))
        chosen = combos[int(action)]
        return {a: dict(c) for a, c in zip(agents, chosen, strict=True)}
    values = np.asarray(action, dtype=float).ravel()
    out, i = {}, 0
    for a in agents:
        names = game.agents[a]
        out[a] = {k: float(v) for k, v in zip(names, values[i:i + len(names)], strict=True)}
        i += len(names)
    return out


class _Episode:
    """The running episode shared by both environments."""

    def __init__(self, game: Game) -> None:
        self.game = game
        self.rng = np.random.default_rng()
        self.state: dict[str, float] = {}
        self.t = 0
        self.totals: dict[str, float] = {}

    def reset(self, seed: int | None, options: dict[str, Any] | None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        start = (options or {}).get("start")
        self.state = dict(start) if start is not None else self.game.start(self.rng)
        self.t = 0
        self.totals = {}


if gymnasium is not None:
    _EnvBase: Any = gymnasium.Env
else:  # pragma: no cover
    _EnvBase = object


class TwinEnv(_EnvBase):
    """A Gymnasium environment on a game: one controller owns every agent's actions and
    is rewarded with the objective ``O``; episodes are truncated at the horizon."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, game: Game) -> None:
        _need("gymnasium")
        self.game = game
        self._agents = list(game.agents)
        self._names = [k for a in self._agents for k in game.agents[a]]
        self.observation_space = _obs_space(game)
        self.action_space = _act_space(game, self._names, self._agents)
        self._ep = _Episode(game)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._ep.reset(seed, options)
        return self.game.observation(self._ep.state, self._ep.totals), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        ep = self._ep
        joint = self.game.joint(ep.state, _decode(self.game, self._agents, action))
        out = self.game.step(ep.state, joint, ep.t, ep.totals, ep.rng)
        ep.state, ep.t = out.next_state, ep.t + 1
        info = {"terms": out.evaluation.terms, "weights": out.evaluation.weights._asdict(),
                "action": out.action}
        return (self.game.observation(ep.state, ep.totals), float(out.evaluation.value), False,
                ep.t >= self.game.horizon, info)


class TwinParallelEnv(ParallelEnv):
    """A PettingZoo Parallel environment on a game: each agent owns its action variables
    and is rewarded with its shaped reward ``R_i' = alpha R_i + beta sum_j R_j``."""

    metadata: ClassVar[dict[str, Any]] = {"name": "lmtwin_twin_v0", "render_modes": []}

    def __init__(self, game: Game) -> None:
        _need("gymnasium")
        _need("pettingzoo")
        self.game = game
        self.possible_agents = list(game.agents)
        self.agents: list[str] = []
        self._ep = _Episode(game)
        self.render_mode = None

    @functools.cache  # noqa: B019 - the same space object every call
    def observation_space(self, agent: str) -> Any:
        return _obs_space(self.game)

    @functools.cache  # noqa: B019
    def action_space(self, agent: str) -> Any:
        return _act_space(self.game, self.game.agents[agent], [agent])

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        self._ep.reset(seed, options)
        self.agents = list(self.possible_agents)
        obs = self.game.observation(self._ep.state, self._ep.totals)
        return {a: obs.copy() for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions: Mapping[str, Any]) -> tuple[
        dict[str, np.ndarray], dict[str, float], dict[str, bool], dict[str, bool],
        dict[str, dict[str, Any]]
    ]:
        ep = self._ep
        chosen: dict[str, dict[str, float]] = {}
        for a in self.agents:
            if a in actions:
                chosen.update(_decode(self.game, [a], actions[a]))
        joint = self.game.joint(ep.state, chosen)
        out = self.game.step(ep.state, joint, ep.t, ep.totals, ep.rng)
        ep.state, ep.t = out.next_state, ep.t + 1
        done = ep.t >= self.game.horizon
        obs = self.game.observation(ep.state, ep.totals)
        agents = self.agents
        info = {"terms": out.evaluation.terms, "weights": out.evaluation.weights._asdict(),
                "value": out.evaluation.value}
        result = (
            {a: obs.copy() for a in agents},
            {a: float(out.shaped[a]) for a in agents},
            dict.fromkeys(agents, False),
            dict.fromkeys(agents, done),
            {a: {**info, "reward": out.rewards[a]} for a in agents},
        )
        if done:
            self.agents = []
        return result
