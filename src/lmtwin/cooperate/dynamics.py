"""Where the agents' world moves: the twin's rollouts, or a true simulator.

A ``Dynamics`` answers one step: the next value of every state variable and its
predictive standard deviation. The twin's answer is its combined forecast (the twin's
Hedge weights over the fast numeric predictors) plus calibrated noise,

    x' = mean + z * sigma,   sigma = (upper - lower) / (2 * z_{(1 + level) / 2})

where ``[lower, upper]`` is the twin's conformal interval and ``z`` a standard normal
drawn from the episode's generator: the same seed gives the same noise to every policy
and coalition compared (common random numbers). A twin that has not calibrated its
intervals yet moves on its mean (``sigma = 0``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import Protocol, runtime_checkable

import numpy as np

from lmtwin.schema import Schema
from lmtwin.twin import Twin

FAST = ("persistence", "numeric")


@runtime_checkable
class Dynamics(Protocol):
    """One step of a system. Implementations set ``schema`` (the variables they move) and
    must draw the same amount of randomness from ``rng`` whatever the action, so that
    seeds give common random numbers."""

    @property
    def schema(self) -> Schema:
        """The variables it moves (states, contexts, actions)."""
        ...

    def step(
        self, state: Mapping[str, float], action: Mapping[str, float], rng: np.random.Generator
    ) -> tuple[dict[str, float], dict[str, float]]:
        """Return the next value and the predictive sd of every state variable."""
        ...


def predict_next(
    twin: Twin, state: Mapping[str, float], action: Mapping[str, float], predictors: Sequence[str]
) -> tuple[dict[str, float], dict[str, float]]:
    """The twin's one-step mean and calibrated sd: the single place that asks the twin
    (one ``predict`` call per path-step; a batched rollout engine plugs in here)."""
    p = twin.predict(state, action, predictors=list(predictors))
    q = NormalDist().inv_cdf((1 + p.level) / 2)
    sigma = {
        k: (p.upper[k] - p.lower[k]) / (2 * q) if k in p.upper and k in p.lower else 0.0
        for k in p.mean
    }
    return dict(p.mean), sigma


class TwinDynamics:
    """The twin as dynamics: its combined forecast plus calibrated noise.

    Args:
        twin: the twin; it keeps learning as it observes, and the dynamics follow.
        predictors: the predictors asked (the fast numeric path by default; add the
            language model only on purpose: about 1 s a step on 2 cores).
        noise: add calibrated noise (True) or move on the mean (False).
    """

    def __init__(self, twin: Twin, predictors: Sequence[str] = FAST, noise: bool = True) -> None:
        self.twin = twin
        self.predictors = tuple(predictors)
        self.noise = noise

    @property
    def schema(self) -> Schema:
        return self.twin.schema

    def step(
        self, state: Mapping[str, float], action: Mapping[str, float], rng: np.random.Generator
    ) -> tuple[dict[str, float], dict[str, float]]:
        names = self.twin.schema.states
        z = dict(zip(names, rng.standard_normal(len(names)), strict=True))
        mean, sigma = predict_next(self.twin, state, action, self.predictors)
        out = {}
        for k, m in mean.items():
            x = m + (z[k] * sigma[k] if self.noise else 0.0)
            var = self.twin.schema.variables[k]
            lo = -np.inf if var.lower is None else var.lower
            hi = np.inf if var.upper is None else var.upper
            out[k] = float(np.clip(x, lo, hi))
        return out, sigma
