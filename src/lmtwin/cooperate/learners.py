"""Learners: tabular Q-learning built in, Stable-Baselines3 through the Gymnasium env.

Q-learning, the textbook update on discretised observations ``s``:

    Q(s, a) <- Q(s, a) + lr * [r + gamma * max_a' Q(s', a') - Q(s, a)]

(``max_a' Q(s', a')`` is 0 after the last step). Actions are epsilon-greedy while
learning and greedy when acting. A learner keeps its table between calls to ``train``,
so agents keep learning on the twin as the twin takes in new data: a drift of the real
system reaches them through the twin, with no retraining of the twin.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lmtwin.cooperate.game import Game, Policy
from lmtwin.errors import DependencyNotInstalled


@dataclass
class Discretiser:
    """Maps an observation to one integer: each dimension cut at ``edges[d]``.

    Build with :meth:`from_samples` (quantiles of observed values), so that each bin
    holds about the same share of the data.
    """

    edges: list[np.ndarray]

    @classmethod
    def from_samples(cls, samples: np.ndarray, bins: int | Sequence[int] = 6) -> Discretiser:
        samples = np.asarray(samples, dtype=float)
        counts = [bins] * samples.shape[1] if isinstance(bins, int) else list(bins)
        edges = []
        for d, b in enumerate(counts):
            qs = np.quantile(samples[:, d], np.linspace(0, 1, b + 1)[1:-1]) if b > 1 else []
            edges.append(np.unique(np.asarray(qs, dtype=float)))
        return cls(edges)

    @property
    def n_states(self) -> int:
        return int(np.prod([len(e) + 1 for e in self.edges]))

    def __call__(self, obs: np.ndarray) -> int:
        index = 0
        for x, e in zip(np.asarray(obs, dtype=float), self.edges, strict=True):
            index = index * (len(e) + 1) + int(np.searchsorted(e, x, side="right"))
        return index


@dataclass
class QLearner:
    """Tabular Q-learning for one agent.

    Args:
        discretiser: observation -> state index.
        n_actions: the agent's discrete actions.
        lr: the step size (alpha of the textbook update).
        gamma: the discount.
        epsilon: exploration at the start, decaying by ``decay`` each episode to
            ``epsilon_min``.
        seed: the exploration's random generator.
    """

    discretiser: Discretiser
    n_actions: int
    lr: float = 0.1
    gamma: float = 0.95
    epsilon: float = 0.3
    decay: float = 0.995
    epsilon_min: float = 0.02
    seed: int = 0
    q_: np.ndarray = field(init=False)
    episodes_: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.q_ = np.zeros((self.discretiser.n_states, self.n_actions))
        self._rng = np.random.default_rng(self.seed)

    def act(self, obs: np.ndarray, explore: bool = False) -> int:
        if explore and self._rng.uniform() < self.epsilon:
            return int(self._rng.integers(self.n_actions))
        row = self.q_[self.discretiser(obs)]
        best = np.flatnonzero(row == row.max())
        return int(best[0] if len(best) == 1 else self._rng.choice(best))

    def learn(self, obs: np.ndarray, action: int, reward: float, next_obs: np.ndarray,
              done: bool) -> None:
        s, s2 = self.discretiser(obs), self.discretiser(next_obs)
        target = reward + (0.0 if done else self.gamma * float(self.q_[s2].max()))
        self.q_[s, action] += self.lr * (target - self.q_[s, action])

    def end_episode(self) -> None:
        self.episodes_ += 1
        self.epsilon = max(self.epsilon_min, self.epsilon * self.decay)


@dataclass
class Training:
    """What ``train`` did: episodes, seconds, and the objective per episode."""

    episodes: int
    seconds: float
    returns: list[float]


def explore(game: Game, episodes: int = 10, seed: int = 0) -> np.ndarray:
    """Observations met under uniformly random discrete actions (rows of the agents'
    observation): what ``q_learners`` cuts into bins."""
    rng = np.random.default_rng(seed)
    rows = []
    for e in range(episodes):
        choices = {a: game.choices(a) for a in game.agents}
        policies: dict[str, Policy] = {a: _random(c, rng) for a, c in choices.items()}
        ep = game.play(policies, game.start(rng), seed + e)
        totals: dict[str, float] = {}
        for state, action in zip(ep.states, [*ep.actions, {}], strict=True):
            rows.append(game.observation(state, totals))
            for k, x in action.items():
                totals[k] = totals.get(k, 0.0) + x
    return np.array(rows)


def _random(choices: list[dict[str, float]], rng: np.random.Generator) -> Policy:
    def policy(state: Mapping[str, float], totals: Mapping[str, float]) -> Mapping[str, float]:
        return choices[int(rng.integers(len(choices)))]

    return policy


def q_learners(game: Game, samples: np.ndarray, bins: int | Sequence[int] = 6,
               seed: int = 0, **kwargs: Any) -> dict[str, QLearner]:
    """One Q-learner per agent of a discrete game, observations binned at quantiles of
    ``samples`` (rows of observed variables, e.g. the twin's stored states)."""
    disc = Discretiser.from_samples(samples, bins)
    return {a: QLearner(disc, len(game.choices(a)), seed=seed + i, **kwargs)
            for i, a in enumerate(game.agents)}


def train(env: Any, learners: Mapping[str, QLearner], episodes: int, seed: int = 0,
          on_episode: Callable[[int, float], None] | None = None) -> Training:
    """Train Q-learners in a PettingZoo Parallel env (each agent on its shaped reward).

    Call again to go on learning (e.g. after the twin took in new data)."""
    started = time.perf_counter()
    returns = []
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        total = 0.0
        while env.agents:
            acts = {a: learners[a].act(obs[a], explore=True) for a in env.agents}
            nxt, rewards, terms, truncs, infos = env.step(acts)
            for a, act in acts.items():
                done = terms[a] or truncs[a]
                learners[a].learn(obs[a], act, rewards[a], nxt[a], done)
            total += next(iter(infos.values()))["value"] if infos else 0.0
            obs = nxt
        for lr in learners.values():
            lr.end_episode()
        returns.append(total)
        if on_episode:
            on_episode(e, total)
    return Training(episodes, time.perf_counter() - started, returns)


def greedy(game: Game, learners: Mapping[str, QLearner]) -> dict[str, Policy]:
    """Each agent's greedy policy as a ``Policy`` of the state (for ``Game.play``)."""
    out: dict[str, Policy] = {}
    for a, lr in learners.items():
        choices = game.choices(a)

        def policy(state: Mapping[str, float], totals: Mapping[str, float],
                   lr: QLearner = lr, choices: list[dict[str, float]] = choices
                   ) -> Mapping[str, float]:
            return choices[lr.act(game.observation(state, totals))]

        out[a] = policy
    return out


def train_sb3(env: Any, algorithm: str = "PPO", steps: int = 2048, seed: int = 0,
              **kwargs: Any) -> Any:
    """Train a Stable-Baselines3 model (``"PPO"`` or ``"DQN"``; DQN needs discrete
    levels) on a Gymnasium env; returns the model (``model.predict(obs)`` to act).
    Extra ``agents``."""
    try:
        import stable_baselines3
    except ImportError:
        raise DependencyNotInstalled("stable-baselines3", "agents") from None
    if algorithm not in ("PPO", "DQN"):
        raise ValueError(f"algorithm must be 'PPO' or 'DQN', not {algorithm!r}")
    cls = getattr(stable_baselines3, algorithm)
    model = cls("MlpPolicy", env, seed=seed, verbose=0, device="cpu", **kwargs)
    model.learn(total_timesteps=steps)
    return model
