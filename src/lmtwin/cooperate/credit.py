"""Fair credit: the Shapley value of each agent's contribution to the objective.

    phi_i = sum_{S subset of N without i} |S|! (n - |S| - 1)! / n! * (v(S u {i}) - v(S))

A coalition's value ``v(S)`` is the objective's mean over a fixed set of episodes when
only the agents in ``S`` act and every other agent follows the default policy. Every
coalition plays the same starts with the same seeds (common random numbers), so the
differences ``v(S u {i}) - v(S)`` carry no noise of their own and ``v`` is a fixed game.
Up to ``exact_max`` agents (8: 256 coalitions) all coalitions are enumerated; beyond,
``phi`` is the mean marginal contribution over random orders of the agents (each order
paired with its reverse, which lowers the variance). Both satisfy efficiency:
``sum_i phi_i = v(N) - v(empty)``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from lmtwin.cooperate.game import Game, Policy

Value = Callable[[frozenset[str]], float]


class CoalitionValue:
    """``v(S)``: the mean objective over ``starts`` x ``seeds`` with only ``S`` acting.

    Values are cached, so the exact and the sampled estimates share episodes; ``played``
    counts the episodes run.
    """

    def __init__(self, game: Game, policies: Mapping[str, Policy],
                 starts: Sequence[Mapping[str, float]], seed: int = 0) -> None:
        missing = set(game.agents) - set(policies)
        if missing:
            raise ValueError(f"no policy for agents {sorted(missing)}")
        self.game = game
        self.policies = dict(policies)
        self.starts = [dict(s) for s in starts]
        self.seed = seed
        self.cache: dict[frozenset[str], float] = {}
        self.played = 0

    def __call__(self, coalition: frozenset[str]) -> float:
        key = frozenset(coalition)
        if key not in self.cache:
            total = 0.0
            for i, start in enumerate(self.starts):
                total += self.game.play(self.policies, start, self.seed + i, acting=key).value
                self.played += 1
            self.cache[key] = total / len(self.starts)
        return self.cache[key]


@dataclass
class Credit:
    """Shapley values per agent, how they were found, and the game's two ends."""

    values: dict[str, float]
    method: str
    v_all: float
    v_none: float
    coalitions: int

    @property
    def gap(self) -> float:
        """``sum_i phi_i - (v(N) - v(empty))``: 0 up to rounding (efficiency)."""
        return sum(self.values.values()) - (self.v_all - self.v_none)


def exact_shapley(value: Value, players: Sequence[str]) -> dict[str, float]:
    """Shapley values by enumerating every coalition (2^n values of ``v``)."""
    n = len(players)
    phi = dict.fromkeys(players, 0.0)
    fact = [math.factorial(k) for k in range(n + 1)]
    for i in players:
        others = [p for p in players if p != i]
        for size in range(n):
            w = fact[size] * fact[n - size - 1] / fact[n]
            for s in itertools.combinations(others, size):
                coalition = frozenset(s)
                phi[i] += w * (value(coalition | {i}) - value(coalition))
    return phi


def sampled_shapley(value: Value, players: Sequence[str], permutations: int = 200,
                    seed: int = 0) -> dict[str, float]:
    """Shapley values as mean marginal contributions over ``permutations`` random orders
    (antithetic: each order and its reverse)."""
    rng = np.random.default_rng(seed)
    phi = dict.fromkeys(players, 0.0)
    count = 0
    while count < permutations:
        order = [players[k] for k in rng.permutation(len(players))]
        for seq in (order, order[::-1]):
            if count >= permutations:
                break
            coalition: frozenset[str] = frozenset()
            before = value(coalition)
            for p in seq:
                coalition = coalition | {p}
                after = value(coalition)
                phi[p] += after - before
                before = after
            count += 1
    return {p: v / count for p, v in phi.items()}


def shapley(value: Value, players: Sequence[str], exact_max: int = 8,
            permutations: int = 200, seed: int = 0) -> Credit:
    """Shapley credit: exact up to ``exact_max`` players, sampled permutations beyond."""
    players = list(players)
    if not players:
        raise ValueError("no players")
    if len(set(players)) != len(players):
        raise ValueError(f"players must be unique: {players}")
    if len(players) <= exact_max:
        values, method = exact_shapley(value, players), "exact"
    else:
        values = sampled_shapley(value, players, permutations, seed)
        method = f"sampled ({permutations} permutations)"
    calls = len(value.cache) if isinstance(value, CoalitionValue) else -1
    return Credit(values, method, value(frozenset(players)), value(frozenset()), calls)


def credit(game: Game, policies: Mapping[str, Policy], starts: Sequence[Mapping[str, float]],
           seed: int = 0, exact_max: int = 8, permutations: int = 200) -> Credit:
    """Shapley credit of each agent of ``game`` playing ``policies`` from ``starts``
    (one episode per start, seeds ``seed, seed + 1, ...`` shared by every coalition)."""
    value = CoalitionValue(game, policies, starts, seed)
    return shapley(value, list(game.agents), exact_max, permutations, seed)
