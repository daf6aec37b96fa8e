"""Reward shaping for cooperation.

    R_i' = alpha * R_i + beta * sum_{j in N(i)} R_j

``N(i)`` is agent ``i``'s neighbours in a graph, or every other agent when no graph is
given; ``beta = 0`` gives independent learners, ``alpha = beta`` with all agents a fully
shared reward.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from lmtwin.errors import CooperateError


@dataclass(frozen=True)
class Shaping:
    """``R_i' = alpha R_i + beta sum_{j in N(i)} R_j``.

    Attributes:
        alpha: weight of the agent's own reward.
        beta: weight of its neighbours' rewards (0: independent learners).
        neighbours: agent -> its neighbours (an undirected graph need not be symmetric
            here: list both directions); None means every other agent.
    """

    alpha: float = 1.0
    beta: float = 0.0
    neighbours: Mapping[str, Sequence[str]] | None = None

    def __post_init__(self) -> None:
        for name, x in (("alpha", self.alpha), ("beta", self.beta)):
            if not math.isfinite(x) or x < 0:
                raise CooperateError(f"shaping {name} must be a finite number >= 0, not {x}")
        if self.alpha == 0 and self.beta == 0:
            raise CooperateError("shaping with alpha = beta = 0 gives every agent reward 0")

    def check(self, agents: Iterable[str]) -> None:
        """Raise ``CooperateError`` when the graph names an unknown agent or a self-loop."""
        known = set(agents)
        for a, ns in (self.neighbours or {}).items():
            bad = ({a} | set(ns)) - known
            if bad:
                raise CooperateError(f"shaping graph names unknown agents {sorted(bad)}")
            if a in ns:
                raise CooperateError(f"agent {a!r} cannot be its own neighbour")

    def of(self, agent: str, agents: Sequence[str]) -> list[str]:
        if self.neighbours is None:
            return [j for j in agents if j != agent]
        return list(self.neighbours.get(agent, ()))

    def __call__(self, rewards: Mapping[str, float]) -> dict[str, float]:
        """The shaped reward of every agent in ``rewards``."""
        agents = list(rewards)
        return {
            i: self.alpha * rewards[i] + self.beta * sum(rewards[j] for j in self.of(i, agents))
            for i in agents
        }


INDEPENDENT = Shaping(1.0, 0.0)
